import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { FlowerCli } from '../src/runner/flower-cli.js';
import { processesIn, workingDirectoryOf } from './support/processes.js';
import { REPO_ROOT } from './support/testkit.js';

const PYTHON = path.join(REPO_ROOT, '.venv/bin/python');
const dir = mkdtempSync(path.join(tmpdir(), 'pollen-flwr-cli-'));
const cliDir = path.join(dir, 'flwr-cli');
// A SuperLink that takes connections and never answers: a `flwr ls` against it waits for ever.
let silentSuperLink: Server;
const heldConnections = new Set<Socket>();
const flwrHome = path.join(dir, 'flwr-home');
const logger = createLogger('warn');

beforeAll(async () => {
  silentSuperLink = createServer((socket) => heldConnections.add(socket));
  await new Promise<void>((resolve) => silentSuperLink.listen(0, '127.0.0.1', resolve));
  const { port } = silentSuperLink.address() as { port: number };
  mkdirSync(flwrHome);
  writeFileSync(path.join(flwrHome, 'config.toml'),
    `[superlink]\ndefault = "silent"\n\n[superlink.silent]\naddress = "127.0.0.1:${port}"\ninsecure = true\n`);
});
afterAll(async () => {
  for (const socket of heldConnections) socket.destroy();
  await new Promise((resolve) => silentSuperLink.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

const command = (options: { home?: string; timeoutMs?: number; signal?: AbortSignal } = {}) => ({
  env: { PATH: process.env.PATH, FLWR_HOME: options.home ?? flwrHome },
  cwd: dir, timeoutMs: options.timeoutMs ?? 30_000, signal: options.signal ?? new AbortController().signal,
});

/**
 * The forker (python/bin/pollen_cli.py, run in `cliDir`) and the `flwr` commands it forked (its command
 * line, run where the command was asked to run), whether or not the forker is still there.
 */
function forkerTree(): { forkers: number[]; commands: number[] } {
  const processes = processesIn(dir).filter(({ args }) => args.includes('pollen_cli.py'));
  const inCliDir = ({ pid }: { pid: number }) => workingDirectoryOf(pid) === cliDir;
  return {
    forkers: processes.filter(inCliDir).map(({ pid }) => pid),
    commands: processes.filter((process) => !inCliDir(process)).map(({ pid }) => pid),
  };
}

describe('flwr commands, forked from a process that has imported Flower', () => {
  it('run as the command would, in their own environment, all from one process', async () => {
    const cli = new FlowerCli(PYTHON, cliDir, logger);
    try {
      expect((await cli.run(['--version'], command())).stdout).toContain('Flower version: 1.42');
      const [forker] = forkerTree().forkers;
      expect(forker).toBeGreaterThan(0);

      // The command reads FLWR_HOME from the environment it was given, and answers in JSON.
      const otherHome = path.join(dir, 'other-home');
      const { stdout } = await cli.run(['run', path.join(dir, 'no-such-app'), 'silent', '--format', 'json'], command({ home: otherHome }));
      expect(JSON.parse(stdout)).toMatchObject({ success: false, 'error-message': expect.stringContaining('pyproject.toml') });
      expect(existsSync(path.join(otherHome, 'config.toml'))).toBe(true);
      expect(forkerTree().forkers).toEqual([forker]);
    } finally {
      await cli.stop();
    }
    expect(forkerTree()).toEqual({ forkers: [], commands: [] });
  });

  it('fail with what Flower said', async () => {
    const cli = new FlowerCli(PYTHON, cliDir, logger);
    try {
      await expect(cli.run(['no-such-command'], command())).rejects.toThrow(/flwr no-such-command exited with code 2: .*No such command/s);
    } finally {
      await cli.stop();
    }
  });

  it('are killed when they take too long or are aborted, and end with the forker', async () => {
    const cli = new FlowerCli(PYTHON, cliDir, logger);
    try {
      await expect(cli.run(['ls', 'silent'], command({ timeoutMs: 3_000 }))).rejects.toThrow('flwr ls did not end within 3 s');
      await expect.poll(() => forkerTree().commands, { timeout: 5_000 }).toEqual([]);

      const abort = new AbortController();
      const aborted = cli.run(['ls', 'silent'], command({ signal: abort.signal }));
      await expect.poll(() => forkerTree().commands.length, { timeout: 10_000 }).toBe(1);
      abort.abort(new Error('the run was stopped'));
      await expect(aborted).rejects.toThrow('the run was stopped');
      await expect.poll(() => forkerTree().commands, { timeout: 5_000 }).toEqual([]);

      // Stopping the forker (as Pollen's exit does: its stdin closes) ends a command still running.
      const cut = cli.run(['ls', 'silent'], command());
      await expect.poll(() => forkerTree().commands.length, { timeout: 10_000 }).toBe(1);
      await cli.stop();
      await expect(cut).rejects.toThrow('flwr ls was killed by signal 9');
      // The command gets its SIGKILL as the forker ends, and may take a moment to be gone.
      await expect.poll(() => forkerTree(), { timeout: 5_000 }).toEqual({ forkers: [], commands: [] });

      // The next command starts a new forker.
      expect((await cli.run(['--version'], command())).stdout).toContain('Flower version');
    } finally {
      await cli.stop();
    }
  });
});
