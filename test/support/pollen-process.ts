import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import mongoose from 'mongoose';
import { afterAll, beforeAll, inject } from 'vitest';
import WebSocket from 'ws';
import { GraphQLClient } from './graphql-client.js';
import { POLLEN_NODE_FLAGS } from './node-flags.mjs';
import { cpuSeconds, processMemory } from './process-figures.mjs';
import { running } from './processes.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = path.join(REPO_ROOT, 'dist/main.js');

export interface PollenOptions {
  /** Extra environment; wins over the kit's defaults. */
  env?: Record<string, string | undefined>;
  /** Database name on the run's FerretDB (a fresh one by default); `false` for embedded mode. */
  database?: string | false;
  /** Reuse a DATA_DIR (for restarts); a fresh temporary one by default. */
  dataDir?: string;
  /** Open Node's inspector on a loopback port, so that the test can run its garbage collector (collectGarbage). */
  inspect?: boolean;
}

/** A real Pollen process (`node dist/main.js`), started the way a user starts it. */
export class PollenProcess {
  /** Every line Pollen printed, stdout and stderr. */
  readonly output: string[] = [];
  url = '';
  private readonly exit: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    readonly dataDir: string,
    readonly database: string | false,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => this.output.push(line));
    createInterface({ input: child.stderr! }).on('line', (line) => this.output.push(line));
    this.exit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  static async start(options: PollenOptions = {}): Promise<PollenProcess> {
    const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), 'pollen-test-data-'));
    const database = options.database ?? `t_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
    const env: Record<string, string | undefined> = {
      ...process.env,
      NODE_ENV: 'test',
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      // Every test file signs many users up from this one address; the limit has a test of its own.
      SIGN_IN_RATE_LIMIT: '100000',
      MONGODB_URI: database === false ? undefined : `${inject('mongoUri')}${database}`,
      ...options.env,
    };
    if (options.inspect) env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --inspect=127.0.0.1:0`.trim();
    const child = spawn(process.execPath, [...POLLEN_NODE_FLAGS, MAIN], { env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    child.once('exit', () => running.delete(child));
    const pollen = new PollenProcess(child, dataDir, database);
    pollen.url = await pollen.readyUrl();
    return pollen;
  }

  /** Waits for the banner a user sees: "Pollen ready at URL". */
  private async readyUrl(): Promise<string> {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const ready = this.output.map((line) => /^Pollen ready at (\S+)$/.exec(line)).find(Boolean);
      if (ready) return ready[1]!;
      if (this.child.exitCode !== null || this.child.signalCode !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`Pollen did not start (exit ${this.child.exitCode ?? this.child.signalCode}):\n${this.output.join('\n')}`);
  }

  get origin(): string {
    return new URL(this.url).origin;
  }

  get wsUrl(): string {
    return this.url.replace(/^http/, 'ws');
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** JSON log lines that Pollen wrote, parsed. */
  logs(): Array<Record<string, unknown>> {
    return this.output.flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  client(token?: string): GraphQLClient {
    return new GraphQLClient(this.url, token);
  }

  /** Sends a signal and waits for the process to end; resolves with its exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    (await this.inspector?.catch(() => undefined))?.close();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exit;
  }

  private inspector?: Promise<InspectorSession>;

  /**
   * Runs a full garbage collection in Pollen and returns its process.memoryUsage() right after:
   * what it really holds, where RSS alone also counts garbage not collected yet. Needs `inspect`.
   */
  async collectGarbage(): Promise<NodeJS.MemoryUsage> {
    this.inspector ??= (() => {
      const url = this.output.map((line) => /^Debugger listening on (ws:\/\/\S+)$/.exec(line)?.[1]).find(Boolean);
      if (!url) throw new Error('collectGarbage needs a Pollen started with inspect: true');
      return InspectorSession.open(url);
    })();
    const session = await this.inspector;
    await session.call('HeapProfiler.collectGarbage');
    const { result } = await session.call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    return JSON.parse((result as { value: string }).value) as NodeJS.MemoryUsage;
  }

  removeDataDir(): void {
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** How many documents each collection of this instance's database holds, read directly. */
  async documentCounts<C extends string>(...collections: C[]): Promise<Record<C, number>> {
    if (this.database === false) throw new Error('documentCounts needs a test database (not embedded mode)');
    const client = await new mongoose.mongo.MongoClient(inject('mongoUri')).connect();
    try {
      const db = client.db(this.database);
      return Object.fromEntries(await Promise.all(collections.map(async (name) => [name, await db.collection(name).countDocuments()]))) as Record<C, number>;
    } finally {
      await client.close();
    }
  }

  /** The process's resident set size (VmRSS), in bytes. */
  rssBytes(): number {
    return processMemory(this.pid).rss;
  }

  /** User + system CPU seconds the process has used so far (10 ms resolution). */
  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }
}

/** A Chrome DevTools Protocol session over the inspector's WebSocket. */
class InspectorSession {
  private nextId = 0;
  private readonly pending = new Map<number, (message: { result?: Record<string, unknown>; error?: unknown }) => void>();

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as { id?: number; result?: Record<string, unknown>; error?: unknown };
      if (message.id === undefined) return;
      this.pending.get(message.id)?.(message);
      this.pending.delete(message.id);
    });
  }

  static async open(url: string): Promise<InspectorSession> {
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    return new InspectorSession(socket);
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, ({ result, error }) => (error ? reject(new Error(`${method}: ${JSON.stringify(error)}`)) : resolve(result ?? {})));
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): void {
    this.socket.close();
  }
}

/**
 * A real Pollen for the tests of the file or describe block this is called in (at its top level):
 * started before them (beforeAll), stopped and its DATA_DIR removed after them (afterAll). The
 * handle forwards everything to that PollenProcess, so it is only usable once beforeAll has run.
 * Hooks registered after this call run after the start and before the stop.
 */
export function usePollen(options?: PollenOptions): PollenProcess {
  let pollen: PollenProcess | undefined;
  beforeAll(async () => {
    pollen = await PollenProcess.start(options);
  });
  afterAll(async () => {
    await pollen?.stop();
    pollen?.removeDataDir();
  });
  const started = (): PollenProcess => {
    if (!pollen) {
      throw new Error('usePollen: this Pollen is not started yet (its beforeAll has not run, or failed); use it inside a test or a hook, not while the file or describe block is being collected');
    }
    return pollen;
  };
  return new Proxy(Object.create(PollenProcess.prototype) as PollenProcess, {
    get(_, key) {
      const target = started();
      const value: unknown = Reflect.get(target, key);
      return typeof value === 'function' ? value.bind(target) : value;
    },
    set: (_, key, value) => Reflect.set(started(), key, value),
    has: (_, key) => Reflect.has(started(), key),
  });
}
