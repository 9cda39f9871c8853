import { execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';

/** Every process the kit started, so none outlives a failed test file. */
export const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Running processes that mention `dir` on their command line or run in it: "PID ARGS" lines. */
export function processesUnder(dir: string): string[] {
  return processesIn(dir).map(({ pid, args }) => `${pid} ${args}`);
}

/**
 * Running processes that mention `dir` on their command line or whose working directory is in it
 * (a job's Flower processes all run in DATA_DIR/jobs/<jobId>, and not all of them name it).
 */
export function processesIn(dir: string): Array<{ pid: number; args: string }> {
  return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .flatMap((line) => {
      const match = /^\s*(\d+) (.*)$/.exec(line);
      return match && !match[2]!.startsWith('ps -eo') ? [{ pid: Number(match[1]), args: match[2]! }] : [];
    })
    .filter(({ pid, args }) => args.includes(dir) || workingDirectoryOf(pid)?.startsWith(dir));
}

/** Where a process runs; undefined once it is gone. */
export function workingDirectoryOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return undefined; // gone, or not ours to read
  }
}

/** Where a Pollen runs its own federations (LOCAL and SIMULATION), each serving one run at a time. */
export function localFederationsDir(dataDir: string): string {
  return path.join(dataDir, 'local-federations');
}

/**
 * What may still run for a job of a Pollen that ran nothing else at the time: processes in the
 * job's directory and in the Pollen's own federations ("PID ARGS" lines).
 */
export function jobProcesses(dataDir: string, jobId: string): string[] {
  return [...processesUnder(path.join(dataDir, 'jobs', jobId)), ...processesUnder(localFederationsDir(dataDir))];
}

/**
 * A run's own processes, as opposed to those of a federation that outlive it (SuperLink, SuperNodes,
 * their SuperExecs and the processes they fork app processes from), by command line or by name
 * (an app process forked from pollen_zygote.py keeps the zygote's command line and takes the app's name).
 */
const RUN_PROCESS = /flwr-serverapp|flwr-clientapp|flwr-simulation|raylet|gcs_server|ray::|default_worker/;

/** What is left of a run in a Pollen whose federation may wait for the next run ("PID NAME ARGS" lines). */
export function runProcessesLeft(dataDir: string, jobId: string): string[] {
  return [path.join(dataDir, 'jobs', jobId), localFederationsDir(dataDir)]
    .flatMap((dir) => processesIn(dir))
    .map(({ pid, args }) => `${pid} ${nameOf(pid)} ${args}`)
    .filter((line) => RUN_PROCESS.test(line));
}

function nameOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return ''; // gone
  }
}
