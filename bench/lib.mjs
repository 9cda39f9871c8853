// Shared helpers for Pollen's benchmarks: plain Node ESM, no build step. Packages resolve from
// the repository's node_modules because this folder lives inside the repository.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createClient } from 'graphql-ws';
import JSZip from 'jszip';
import WebSocket from 'ws';

export const REPO = fileURLToPath(new URL('..', import.meta.url));
export const DIGITS_APP = path.join(REPO, 'examples/digits-app');
export const FLOWER_BIN = path.join(REPO, '.venv/bin');

// ------------------------------------------------------------------ options, lifecycle

/** `--name=N` on the command line, else the NAME environment variable, else the default. */
export function option(name, fallback) {
  const flag = process.argv.slice(2).find((arg) => arg.startsWith(`--${name}=`));
  const raw = flag ? flag.slice(name.length + 3) : process.env[name.toUpperCase().replaceAll('-', '_')];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name}: expected a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

const cleanups = [];

/** Registers a teardown. They run newest first, once, on success, on failure and on Ctrl-C. */
export function onCleanup(teardown) {
  cleanups.push(teardown);
}

async function runCleanups() {
  while (cleanups.length > 0) {
    try {
      await cleanups.pop()();
    } catch (error) {
      console.error(`cleanup: ${error?.message ?? error}`);
    }
  }
}

/** Runs a benchmark's main, then tears down everything it started; exits 0 only on success. */
export async function runBenchmark(main) {
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => void runCleanups().finally(() => process.exit(130)));
  let code = 0;
  try {
    await main();
  } catch (error) {
    console.error(`benchmark failed: ${error?.stack ?? error}`);
    code = 1;
  }
  await runCleanups();
  process.exit(code); // lingering sockets must not keep the process alive
}

export function tempDir(prefix) {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects after `ms` unless the promise settles first. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s: ${what}`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Stops a child we spawned: SIGTERM, then SIGKILL to its process group after `graceMs`. */
export async function stopChild(child, graceMs) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid, 'SIGKILL'); // spawned with detached: true, so the group is its own
    } catch {
      child.kill('SIGKILL');
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

// ------------------------------------------------------------------------------ Pollen

/** Starts `node dist/main.js` on a free port with a fresh DATA_DIR (embedded FerretDB). */
export async function startPollen() {
  const dataDir = tempDir('pollen-bench-data-');
  const env = { ...process.env, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  delete env.MONGODB_URI; // unset: Pollen starts its own FerretDB under DATA_DIR
  const child = spawn(process.execPath, [path.join(REPO, 'dist/main.js')], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  // Pollen stops its FerretDB and Flower processes itself on SIGTERM; give it time to.
  onCleanup(() => stopChild(child, 30_000));
  const output = [];
  const ready = new Promise((resolve, reject) => {
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        output.push(line);
        if (output.length > 200) output.shift();
        const banner = /^Pollen ready at (\S+)$/.exec(line);
        if (banner) resolve(banner[1]);
      });
    }
    child.once('exit', (code, signal) => reject(new Error(`Pollen exited (${signal ?? code}):\n${output.join('\n')}`)));
  });
  const url = await within(120_000, ready, 'Pollen to print its banner');
  return { url, wsUrl: url.replace(/^http/, 'ws'), output };
}

export async function graphql(url, token, query, variables = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return dataOf(await response.json());
}

function dataOf(body) {
  if (body.errors?.length || !body.data) throw new Error(`GraphQL errors: ${JSON.stringify(body.errors ?? body)}`);
  return body.data;
}

/** Zips a folder the way a user would, leaving caches out. */
export async function zipDirectory(dir) {
  const zip = new JSZip();
  const walk = (relative) => {
    for (const entry of readdirSync(path.join(dir, relative), { withFileTypes: true })) {
      if (['__pycache__', '.venv'].includes(entry.name) || entry.name.endsWith('.pyc')) continue;
      const child = path.posix.join(relative, entry.name);
      if (entry.isDirectory()) walk(child);
      else zip.file(child, readFileSync(path.join(dir, child)));
    }
  };
  walk('');
  return zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
}

/** A fresh user with a project, the digits app and a training config: all a job needs. */
export async function prepareDigitsJob(pollen, { rounds, clients }) {
  const name = `bench${Date.now()}`;
  const { register } = await graphql(pollen.url, null,
    'mutation($input: RegisterInput!) { register(input: $input) { accessToken } }',
    { input: { username: name, email: `${name}@example.com`, password: 'Bench-password-1' } });
  const token = register.accessToken;
  const { createProject } = await graphql(pollen.url, token,
    'mutation($input: CreateProjectInput!) { createProject(input: $input) { id } }', { input: { name } });
  const projectId = createProject.id;

  // GraphQL multipart request: `operations`, `map`, then the file as part "0".
  const form = new FormData();
  form.set('operations', JSON.stringify({
    query: 'mutation($projectId: ID!, $file: Upload!) { uploadApp(projectId: $projectId, file: $file) { id } }',
    variables: { projectId, file: null },
  }));
  form.set('map', JSON.stringify({ 0: ['variables.file'] }));
  form.set('0', new Blob([await zipDirectory(DIGITS_APP)]), 'digits-app.zip');
  const uploaded = await fetch(pollen.url, {
    method: 'POST',
    headers: { 'apollo-require-preflight': 'true', authorization: `Bearer ${token}` },
    body: form,
  });
  const appId = dataOf(await uploaded.json()).uploadApp.id;

  const { createTrainingConfig } = await graphql(pollen.url, token,
    'mutation($input: CreateTrainingConfigInput!) { createTrainingConfig(input: $input) { id } }',
    { input: { projectId, name: `${rounds} rounds`, rounds, clients, learningRate: 0.1 } });
  return { token, appId, configId: createTrainingConfig.id };
}

export async function startTraining(pollen, job) {
  const { startTraining: started } = await graphql(pollen.url, job.token,
    'mutation($input: StartTrainingInput!) { startTraining(input: $input) { id } }',
    { input: { appId: job.appId, configId: job.configId } });
  return started.id;
}

/** A graphql-ws connection, authenticated through connectionParams; resolves once it is open. */
export async function connectWebSocket(wsUrl, token) {
  let opened;
  const connected = new Promise((resolve, reject) => (opened = { resolve, reject }));
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: { authorization: `Bearer ${token}` },
    on: { connected: () => opened.resolve(), closed: (event) => opened.reject(new Error(`websocket closed: ${event?.code}`)) },
    onNonLazyError: (error) => opened.reject(error),
  });
  onCleanup(() => client.dispose());
  await within(30_000, connected, 'the websocket to connect');
  return client;
}

/** Subscribes (or runs a query); `onData` gets each result's data. Resolves when the server completes it. */
export function subscribe(client, query, variables, onData) {
  return new Promise((resolve, reject) => {
    client.subscribe({ query, variables }, {
      next: (result) => (result.errors ? reject(new Error(`GraphQL errors: ${JSON.stringify(result.errors)}`)) : onData(result.data)),
      error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
      complete: resolve,
    });
  });
}

/** Follows a job until it ends; rejects unless it COMPLETED. */
export async function untilJobEnds(client, jobId) {
  let last;
  await subscribe(client, 'subscription($jobId: ID!) { trainingJobUpdated(jobId: $jobId) { status statusReason } }',
    { jobId }, (data) => (last = data.trainingJobUpdated));
  if (last?.status !== 'COMPLETED') throw new Error(`job ${jobId} ended ${last?.status}: ${last?.statusReason}`);
}

// ------------------------------------------------------------------------ figures, output

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function summarize(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return { count: sorted.length, p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: sorted.at(-1) ?? NaN };
}

export const ms = (value) => (Number.isFinite(value) ? value.toFixed(value < 10 ? 2 : 1) : '-');

export function printTable(headers, rows) {
  const cells = [headers, ...rows].map((row) => row.map(String));
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  const line = (row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
  console.log(line(cells[0]));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of cells.slice(1)) console.log(line(row));
}

export const loadAverage = () => loadavg().map((value) => value.toFixed(2)).join(', ');
