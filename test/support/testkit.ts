import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type GraphQLFormattedError } from 'graphql';
import { pino } from 'pino';
import { createClient, type Client } from 'graphql-ws';
import mongoose from 'mongoose';
import { inject } from 'vitest';
import WebSocket from 'ws';
import { startEmbeddedFerretDB, type EmbeddedFerretDB } from '../../src/db/embedded-ferretdb.js';
import { zipDirectory } from './fixtures.js';
import { POLLEN_NODE_FLAGS } from './node-flags.mjs';
import { cpuSeconds, processMemory } from './process-figures.mjs';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = path.join(REPO_ROOT, 'dist/main.js');

/** Every process the kit started, so none outlives a failed test file. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

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

export interface GraphQLResponse<R> {
  status: number;
  headers: Headers;
  data?: R | null;
  errors?: GraphQLFormattedError[];
}

/** Runs typed documents from test/operations over HTTP, as any client would. */
export class GraphQLClient {
  constructor(readonly url: string, public token?: string) {}

  async request<R, V>(
    document: TypedDocumentNode<R, V>,
    ...[variables, headers]: V extends Record<string, never> ? [V?, Record<string, string>?] : [V, Record<string, string>?]
  ): Promise<GraphQLResponse<R>> {
    return this.post({ query: print(document), variables }, headers);
  }

  /** Posts a raw GraphQL body (for hostile or hand-written requests). */
  async post<R = Record<string, unknown>>(body: unknown, headers: Record<string, string> = {}): Promise<GraphQLResponse<R>> {
    const response = await fetch(this.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        ...headers,
      },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: { data?: R | null; errors?: GraphQLFormattedError[] };
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`Non-JSON answer (${response.status}): ${text.slice(0, 200)}`);
    }
    return { status: response.status, headers: response.headers, ...parsed };
  }

  /**
   * Sends a GraphQL multipart request (the upload spec), with the preflight header Apollo's CSRF
   * prevention asks for. `files` maps a variable name to the file sent for it.
   */
  async upload<R, V>(
    document: TypedDocumentNode<R, V>,
    variables: V,
    files: Record<string, { bytes: Buffer; filename: string }>,
  ): Promise<GraphQLResponse<R>> {
    return this.send(this.prepareUpload(document, variables, files));
  }

  /**
   * The request upload() sends, encoded now to be sent later, from this process or another. The
   * body is put together in one copy: encoding 100 MB through FormData took seconds on a busy host,
   * long enough for the server to close this process's idle keep-alive connections while fetch,
   * which could not run its timers meanwhile, still took them for open (EPIPE).
   */
  prepareUpload<R, V>(
    document: TypedDocumentNode<R, V>,
    variables: V,
    files: Record<string, { bytes: Buffer; filename: string }>,
  ): PreparedRequest<R> {
    const names = Object.keys(files);
    const boundary = `pollen-test-${randomUUID()}`;
    const part = (name: string, content: string | Buffer, filename?: string) => [
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"` +
        `${filename === undefined ? '' : `; filename="${encodeURIComponent(filename)}"\r\nContent-Type: application/octet-stream`}\r\n\r\n`),
      typeof content === 'string' ? Buffer.from(content) : content,
      Buffer.from('\r\n'),
    ];
    const body = Buffer.concat([
      ...part('operations', JSON.stringify({
        query: print(document),
        variables: { ...variables, ...Object.fromEntries(names.map((name) => [name, null])) },
      })),
      ...part('map', JSON.stringify(Object.fromEntries(names.map((name, i) => [String(i), [`variables.${name}`]])))),
      ...names.flatMap((name, i) => part(String(i), files[name]!.bytes, files[name]!.filename)),
      Buffer.from(`--${boundary}--\r\n`),
    ]);
    return {
      url: this.url,
      headers: {
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'apollo-require-preflight': 'true',
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
      body: new Uint8Array(body.buffer, body.byteOffset, body.byteLength) as Uint8Array<ArrayBuffer>,
    };
  }

  async send<R>(request: PreparedRequest<R>): Promise<GraphQLResponse<R>> {
    const response = await fetch(request.url, { method: 'POST', headers: request.headers, body: request.body });
    return { status: response.status, headers: response.headers, ...(await response.json()) };
  }

  /** Like request, but fails the test on any error and returns the data. */
  async data<R, V>(
    document: TypedDocumentNode<R, V>,
    ...rest: V extends Record<string, never> ? [V?, Record<string, string>?] : [V, Record<string, string>?]
  ): Promise<R> {
    const result = await this.request(document, ...rest);
    if (result.errors?.length || !result.data) {
      throw new Error(`GraphQL errors: ${JSON.stringify(result.errors)}`);
    }
    return result.data;
  }
}

/** An HTTP POST ready to send; `R` is the GraphQL result it answers with. */
export interface PreparedRequest<R> {
  url: string;
  headers: Record<string, string>;
  body: Uint8Array<ArrayBuffer>;
  /** Only carries the result type. */
  readonly result?: R;
}

/** What sendFromAnotherProcess saw of one response. */
export interface SentRequest<R> {
  status: number;
  /** From sending the request to reading the whole answer. */
  ms: number;
  data?: R | null;
  errors?: GraphQLFormattedError[];
}

const SENDER = `
import { readFileSync } from 'node:fs';
const requests = JSON.parse(readFileSync(process.argv[1], 'utf8'));
const bodies = new Map(requests.map(({ bodyFile }) => [bodyFile, readFileSync(bodyFile)]));
const answers = await Promise.all(requests.map(async ({ url, headers, bodyFile }) => {
  const started = performance.now();
  const response = await fetch(url, { method: 'POST', headers, body: bodies.get(bodyFile) });
  const text = await response.text();
  return { status: response.status, ms: performance.now() - started, ...JSON.parse(text) };
}));
process.stdout.write(JSON.stringify(answers));
`;

/**
 * Sends requests all at once from a separate Node process, as other clients would: this process
 * stays free to measure what its own requests meet meanwhile. Answers come back in order.
 */
export async function sendFromAnotherProcess<R>(requests: ReadonlyArray<PreparedRequest<R>>): Promise<Array<SentRequest<R>>> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pollen-test-sender-'));
  try {
    const bodyFiles = new Map<Uint8Array, string>();
    const manifest = requests.map(({ url, headers, body }) => {
      if (!bodyFiles.has(body)) {
        bodyFiles.set(body, path.join(dir, `${bodyFiles.size}.body`));
        writeFileSync(bodyFiles.get(body)!, body);
      }
      return { url, headers, bodyFile: bodyFiles.get(body) };
    });
    writeFileSync(path.join(dir, 'requests.json'), JSON.stringify(manifest));
    const child = spawn(process.execPath, ['--input-type=module', '-e', SENDER, path.join(dir, 'requests.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    const output: Buffer[] = [];
    const errors: Buffer[] = [];
    child.stdout!.on('data', (chunk: Buffer) => output.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => errors.push(chunk));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    running.delete(child);
    if (code !== 0) throw new Error(`The sender process failed (exit ${code}): ${Buffer.concat(errors).toString()}`);
    return JSON.parse(Buffer.concat(output).toString()) as Array<SentRequest<R>>;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The single error's code, or a readable failure. */
export function errorCode(result: { errors?: readonly GraphQLFormattedError[] }): unknown {
  if (result.errors?.length !== 1) throw new Error(`expected exactly one error, got ${JSON.stringify(result.errors)}`);
  return result.errors[0]!.extensions?.code;
}

/** Everything a subscription delivered, and how it ended. */
export interface Collected<R> {
  items: R[];
  /** Resolves when the server completes the subscription; rejects on an error. */
  ended: Promise<void>;
  errors?: readonly GraphQLFormattedError[];
}

export interface WsConnection {
  client: Client;
  subscribe<R, V>(document: TypedDocumentNode<R, V>, variables?: V): Collected<R>;
  /** Resolves with the close event once the socket closes. */
  closed: Promise<{ code: number; reason: string }>;
  execute<R, V>(document: TypedDocumentNode<R, V>, variables?: V): Promise<{ data?: R | null; errors?: readonly GraphQLFormattedError[] }>;
}

/** A graphql-ws client, with connectionParams as the API contract describes. */
export function connectWebSocket(wsUrl: string, token?: string): WsConnection {
  let onClosed!: (event: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => (onClosed = resolve));
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    on: { closed: (event) => onClosed(event as { code: number; reason: string }) },
    onNonLazyError: () => undefined,
  });
  return {
    client,
    closed,
    subscribe(document, variables) {
      const collected = { items: [] } as unknown as Collected<never>;
      collected.ended = new Promise<void>((resolve, reject) => {
        client.subscribe({ query: print(document), variables: variables as Record<string, unknown> }, {
          next: (value) => {
            if (value.errors) collected.errors = value.errors;
            if (value.data) collected.items.push(value.data as never);
          },
          error: (error) => {
            collected.errors = Array.isArray(error) ? error : [{ message: String(error) }];
            reject(new Error(`subscription failed: ${JSON.stringify(collected.errors)}`));
          },
          complete: () => resolve(),
        });
      });
      collected.ended.catch(() => undefined);
      return collected;
    },
    execute(document, variables) {
      return new Promise((resolve, reject) => {
        let result: { data?: never; errors?: readonly GraphQLFormattedError[] } | undefined;
        client.subscribe({ query: print(document), variables: variables as Record<string, unknown> }, {
          next: (value) => (result = value as typeof result),
          error: (error) => (Array.isArray(error) ? resolve({ errors: error }) : reject(error)),
          complete: () => resolve(result ?? {}),
        });
      });
    },
  };
}

const STRONG_PASSWORD = 'Pollen!2026';

/** Registers a fresh user and returns the session and a client signed in as them. */
export async function signUp(pollen: PollenProcess, name = `user_${randomUUID().slice(0, 8)}`) {
  const { RegisterDocument } = await import('../generated/graphql.js');
  const anonymous = pollen.client();
  const { register } = await anonymous.data(RegisterDocument, {
    input: { username: name, email: `${name}@example.com`, password: STRONG_PASSWORD },
  });
  return { session: register, password: STRONG_PASSWORD, client: pollen.client(register.accessToken) };
}

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

/** The p-th percentile (0–100) of some numbers, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Runs `work` and returns its result with how long it took, in milliseconds. */
export async function timed<T>(work: () => Promise<T>): Promise<{ result: T; ms: number }> {
  const started = performance.now();
  const result = await work();
  return { result, ms: performance.now() - started };
}

/** Uploads an app folder, saves a config and starts training it; returns the queued job's id. */
export async function queueJob(
  client: GraphQLClient, projectId: string, appDir: string, rounds: number, runConfig?: Record<string, unknown>,
): Promise<string> {
  const { CreateTrainingConfigDocument, StartTrainingDocument, UploadAppDocument } = await import('../generated/graphql.js');
  const upload = await client.upload(UploadAppDocument, { projectId, file: null }, {
    file: { bytes: await zipDirectory(appDir), filename: `${path.basename(appDir)}.zip` },
  });
  if (upload.errors || !upload.data) throw new Error(`upload failed: ${JSON.stringify(upload.errors)}`);
  const { createTrainingConfig } = await client.data(CreateTrainingConfigDocument, {
    input: { projectId, name: `${rounds} rounds`, rounds, clients: 2, runConfig },
  });
  const { startTraining } = await client.data(StartTrainingDocument, {
    input: { appId: upload.data.uploadApp.id, configId: createTrainingConfig.id },
  });
  return startTraining.id;
}

/**
 * A FerretDB of a test's own (not the run's shared one), which the test may stop and start again
 * on the same port and the same SQLite store, as an operator restarting the database would.
 */
export class OwnFerretDB {
  private constructor(readonly storeDir: string, readonly port: number, private server: EmbeddedFerretDB | undefined) {}

  static async start(): Promise<OwnFerretDB> {
    const storeDir = mkdtempSync(path.join(tmpdir(), 'pollen-test-own-db-'));
    try {
      const server = await startEmbeddedFerretDB(storeDir, pino({ level: 'silent' }));
      return new OwnFerretDB(storeDir, Number(new URL(server.uri).port), server);
    } catch (error) {
      rmSync(storeDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** mongodb://127.0.0.1:PORT/ (the same across restarts). */
  get uri(): string {
    return `mongodb://127.0.0.1:${this.port}/`;
  }

  get pid(): number | undefined {
    return this.server?.pid;
  }

  async stop(): Promise<void> {
    await this.server?.stop();
    this.server = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    this.server = await startEmbeddedFerretDB(this.storeDir, pino({ level: 'silent' }), { port: this.port });
  }

  /** Stops it and deletes its store. */
  async remove(): Promise<void> {
    await this.stop();
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}
