// Plain JavaScript, so that the tests and the benchmarks in bench/ share it.
import { readFileSync } from 'node:fs';

/**
 * VmRSS and VmHWM (peak RSS) of a process, in bytes, from /proc/<pid>/status.
 * @param {number} pid
 * @returns {{ rss: number, peak: number }}
 */
export function processMemory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  /** @param {string} field */
  const kib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1]) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

/**
 * User + system CPU seconds a process has used so far (/proc/<pid>/stat, 100 ticks a second).
 * @param {number} pid
 * @returns {number}
 */
export function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
