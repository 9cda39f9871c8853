import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const GUARD = fileURLToPath(new URL('../../src/runner/python/process_guard.py', import.meta.url));
/** The guard itself gives its processes 5 s after SIGTERM; this is the last resort after that. */
const GUARD_KILL_AFTER_MS = 10_000;

export interface GuardedProcessOptions {
  python: string;
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Every line the process writes, stdout and stderr. */
  onLine?: (line: string) => void;
}

/**
 * A command run under python/process_guard.py, which answers for every process the command
 * starts (Flower starts some in sessions of their own). Stopping it stops them all; so does
 * Pollen's death, because the guard ends everything when the pipe on its stdin closes.
 */
export class GuardedProcess {
  /** Every guarded process not yet exited, for a last sweep at shutdown. */
  static readonly running = new Set<GuardedProcess>();

  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly name: string, private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    GuardedProcess.running.add(this);
    void this.exited.then(() => GuardedProcess.running.delete(this));
  }

  static start(name: string, command: string, args: string[], options: GuardedProcessOptions): GuardedProcess {
    const child = spawn(options.python, [GUARD, command, ...args], {
      env: options.env, cwd: options.cwd, detached: true, stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.once('error', () => undefined); // reported through `exited`
    child.stdin!.on('error', () => undefined);
    for (const stream of [child.stdout!, child.stderr!]) {
      if (options.onLine) createInterface({ input: stream }).on('line', options.onLine);
      else stream.resume();
    }
    return new GuardedProcess(name, child);
  }

  get hasExited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  async stop(): Promise<void> {
    if (!this.hasExited) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.killGroup(), GUARD_KILL_AFTER_MS);
    await this.exited;
    clearTimeout(timer);
  }

  private killGroup(): void {
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
