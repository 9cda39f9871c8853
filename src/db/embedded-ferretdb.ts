import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../logger.js';

/** Where `scripts/build-ferretdb.sh` puts the binary (overridable for packaged installs). */
export function ferretdbBinary(): string {
  return process.env.FERRETDB_BIN ||
    fileURLToPath(new URL('../../.tools/bin/ferretdb', import.meta.url));
}

export interface EmbeddedFerretDB {
  /** mongodb://127.0.0.1:PORT/ */
  readonly uri: string;
  readonly pid: number;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;

/**
 * Starts FerretDB on SQLite under `storeDir` (built with Pollen's patch, scripts/ferretdb/README.md),
 * on a free loopback port (or `options.port`). The
 * child keeps a pipe to our process as its stdin and exits when that closes, so it dies with us
 * even on SIGKILL.
 */
export async function startEmbeddedFerretDB(
  storeDir: string, logger: Logger, options: { port?: number; disablePushdown?: boolean } = {},
): Promise<EmbeddedFerretDB> {
  const binary = ferretdbBinary();
  if (!existsSync(binary)) {
    throw new Error(`FerretDB binary not found at ${binary}: run "bash scripts/setup.sh" (npm start does this).`);
  }
  const args = ['--sqlite-dir', path.resolve(storeDir), '--listen-addr', `127.0.0.1:${options.port ?? 0}`, '--log-level', 'error'];
  // Every query evaluated by FerretDB itself, none by SQLite: the reference that tests compare pushdown with.
  if (options.disablePushdown) args.push('--disable-pushdown');
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const log = logger.child({ component: 'ferretdb', pid: child.pid });
  createInterface({ input: child.stderr! }).on('line', (line) => log.warn({ ferretdb: line }, 'ferretdb output'));

  const uri = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`FerretDB did not become ready within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    child.once('error', fail);
    child.once('exit', (code, signal) => fail(new Error(`FerretDB exited before it was ready (code ${code}, signal ${signal})`)));
    createInterface({ input: child.stdout! }).once('line', (line) => {
      const match = /^ready (mongodb:\/\/\S+)$/.exec(line);
      if (!match) return fail(new Error(`Unexpected FerretDB output: ${line}`));
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve(match[1]!);
    });
  });
  log.info({ uri }, 'embedded FerretDB started');
  child.once('exit', (code, signal) => log.info({ code, signal }, 'embedded FerretDB exited'));

  return { uri, pid: child.pid!, stop: () => stopChild(child) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}
