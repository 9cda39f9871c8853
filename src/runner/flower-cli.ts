import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../logger.js';

const FORKER = fileURLToPath(new URL('../../src/runner/python/bin/pollen_cli.py', import.meta.url));
/** Output kept in an error: the end of what the command wrote, where Flower says what went wrong. */
const ERROR_OUTPUT_CHARS = 2_000;

export interface FlowerCommand {
  env: NodeJS.ProcessEnv;
  cwd: string;
  timeoutMs: number;
  /** Aborting it kills the command. */
  signal: AbortSignal;
}

export interface FlowerCommandOutput { stdout: string; stderr: string }

interface Pending {
  pid?: number;
  ended: (code: number) => void;
}

/**
 * `flwr` commands, each forked from one process that has imported Flower's CLI
 * (python/bin/pollen_cli.py) instead of started from scratch: a `flwr run` returns a second sooner.
 * That process starts with the first command, again after it died, and ends with `stop()` or
 * with Pollen (its stdin closes); a command's output goes through files in a directory of its own
 * under `dir`.
 */
export class FlowerCli {
  private forker?: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  constructor(private readonly python: string, private readonly dir: string, private readonly logger: Logger) {}

  /** Runs `flwr <args>`; rejects when it fails, times out or is aborted, with the end of its output. */
  async run(args: string[], command: FlowerCommand): Promise<FlowerCommandOutput> {
    command.signal.throwIfAborted();
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const id = this.nextId++;
    // A directory of its own: Pollens that share a DATA_DIR number their commands alike.
    const outputDir = await mkdtemp(path.join(this.dir, 'command-'));
    const files = { stdout: path.join(outputDir, 'stdout'), stderr: path.join(outputDir, 'stderr') };
    try {
      const code = await this.fork(id, args, command, files);
      // A command whose forker died before it ran wrote nothing.
      const [stdout, stderr] = await Promise.all([files.stdout, files.stderr].map((file) => readFile(file, 'utf8').catch(() => '')));
      if (code !== 0) {
        const said = (stderr.trim() || stdout.trim()).slice(-ERROR_OUTPUT_CHARS);
        throw new Error(`flwr ${args[0]} ${code < 0 ? `was killed by signal ${-code}` : `exited with code ${code}`}${said ? `: ${said}` : ''}`);
      }
      return { stdout, stderr };
    } finally {
      await rm(outputDir, { recursive: true, force: true });
    }
  }

  async stop(): Promise<void> {
    const forker = this.forker;
    if (!forker || forker.exitCode !== null || forker.signalCode !== null) return;
    const exited = new Promise((resolve) => forker.once('exit', resolve));
    forker.stdin!.end(); // the forker and its children end
    await exited;
  }

  private fork(id: number, args: string[], command: FlowerCommand, files: { stdout: string; stderr: string }): Promise<number> {
    const forker = this.startedForker();
    return new Promise<number>((resolve, reject) => {
      const killCommand = () => killQuietly(this.pending.get(id)?.pid);
      const timer = setTimeout(() => {
        killCommand();
        finish(() => reject(new Error(`flwr ${args[0]} did not end within ${command.timeoutMs / 1000} s`)));
      }, command.timeoutMs);
      const aborted = () => {
        killCommand();
        finish(() => reject(command.signal.reason));
      };
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        command.signal.removeEventListener('abort', aborted);
        this.pending.delete(id);
        settle();
      };
      command.signal.addEventListener('abort', aborted, { once: true });
      this.pending.set(id, { ended: (code) => finish(() => resolve(code)) });
      forker.stdin!.write(`${JSON.stringify({ id, args, cwd: command.cwd, env: command.env, ...files })}\n`);
    });
  }

  private startedForker(): ChildProcess {
    if (this.forker && this.forker.exitCode === null && this.forker.signalCode === null) return this.forker;
    // Run in `dir`, where a look for what a Pollen left running under DATA_DIR finds it.
    const forker = spawn(this.python, [FORKER], { cwd: this.dir, stdio: ['pipe', 'pipe', 'pipe'] });
    forker.stdin!.on('error', () => undefined); // seen as its exit
    createInterface({ input: forker.stderr! }).on('line', (line) => this.logger.warn({ line }, 'flwr command forker'));
    createInterface({ input: forker.stdout! }).on('line', (line) => {
      const answer = JSON.parse(line) as { id: number; pid?: number; code?: number };
      const pending = this.pending.get(answer.id);
      if (answer.pid !== undefined) {
        if (pending) pending.pid = answer.pid;
        else killQuietly(answer.pid); // timed out or aborted before it started
      }
      if (answer.code !== undefined) pending?.ended(answer.code);
    });
    const gone = () => {
      if (this.forker !== forker) return;
      this.forker = undefined;
      // Its children died with it (PR_SET_PDEATHSIG): the commands still waiting have failed.
      for (const pending of this.pending.values()) pending.ended(-9);
    };
    forker.once('exit', gone);
    forker.once('error', gone);
    this.forker = forker;
    return forker;
  }
}

function killQuietly(pid: number | undefined): void {
  try {
    if (pid) process.kill(pid, 'SIGKILL');
  } catch {
    // it has ended already
  }
}
