import { execFileSync, type ChildProcess } from 'node:child_process';
import { readlinkSync } from 'node:fs';

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

function workingDirectoryOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return undefined; // gone, or not ours to read
  }
}
