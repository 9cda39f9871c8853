// Shared helpers for Pollen's benchmarks: plain Node ESM, no build step. Packages resolve from
// the repository's node_modules because this folder lives inside the repository.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createClient } from 'graphql-ws';
import { MongoCommandCounter } from '../test/support/mongo-command-counter.mjs';
import { POLLEN_NODE_FLAGS } from '../test/support/node-flags.mjs';
import { cpuSeconds, processMemory } from '../test/support/process-figures.mjs';
import JSZip from 'jszip';
import mongoose from 'mongoose';
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

/** Like option(), for a comma-separated list of positive integers (`--page-sizes=5,50`). */
export function listOption(name, fallback) {
  const flag = process.argv.slice(2).find((arg) => arg.startsWith(`--${name}=`));
  const raw = flag ? flag.slice(name.length + 3) : process.env[name.toUpperCase().replaceAll('-', '_')];
  if (raw === undefined || raw === '') return fallback;
  const values = raw.split(',').map(Number);
  if (!values.every((value) => Number.isInteger(value) && value >= 1)) {
    throw new Error(`${name}: expected positive integers separated by commas, got ${JSON.stringify(raw)}`);
  }
  return values;
}

const cleanups = [];
const pollens = []; // every Pollen started, for its output when a benchmark fails

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
    for (const { url, output } of pollens) {
      if (output.length > 0) console.error(`--- last lines of Pollen ${url}:\n${output.slice(-30).join('\n')}`);
    }
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

const startedAt = performance.now();

/** A progress line on stderr, with the time since the benchmark started; the figures go to stdout. */
export function progress(text) {
  console.error(`[${((performance.now() - startedAt) / 1000).toFixed(1).padStart(6)} s] ${text}`);
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

/**
 * Starts `node dist/main.js` on a free port with a fresh DATA_DIR. `env` adds or overrides
 * settings; without MONGODB_URI in it Pollen starts its own embedded FerretDB under DATA_DIR.
 * `pid` is the Pollen (node) process itself, for /proc figures; `dataDir` its DATA_DIR (a job's files are in
 * `dataDir/jobs/<jobId>`). Node gets the flags `npm start`
 * gives it, then `nodeArgs` (or POLLEN_NODE_ARGS, space-separated), e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`.
 * `onLine`, if given, gets every line Pollen writes (stdout and stderr) as it arrives, beyond the
 * last 200 that `output` keeps.
 */
export async function startPollen({ env: settings = {}, nodeArgs = (process.env.POLLEN_NODE_ARGS ?? '').split(' ').filter(Boolean), onLine } = {}) {
  const dataDir = tempDir('pollen-bench-data-');
  const env = { ...process.env, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...settings };
  if (!settings.MONGODB_URI) delete env.MONGODB_URI; // unset: Pollen starts its own FerretDB under DATA_DIR
  const child = spawn(process.execPath, [...POLLEN_NODE_FLAGS, ...nodeArgs, path.join(REPO, 'dist/main.js')],
    { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  // Pollen stops its FerretDB and Flower processes itself on SIGTERM; give it time to.
  const stop = () => stopChild(child, 30_000);
  onCleanup(stop);
  const output = [];
  const ready = new Promise((resolve, reject) => {
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        output.push(line);
        if (output.length > 200) output.shift();
        onLine?.(line);
        const banner = /^Pollen ready at (\S+)$/.exec(line);
        if (banner) resolve(banner[1]);
      });
    }
    child.once('exit', (code, signal) => reject(new Error(`Pollen exited (${signal ?? code}):\n${output.join('\n')}`)));
  });
  const url = await within(120_000, ready, 'Pollen to print its banner');
  pollens.push({ url, output });
  return { url, wsUrl: url.replace(/^http/, 'ws'), output, pid: child.pid, dataDir, stop };
}

// ----------------------------------------------------------------------------- database

/**
 * A FerretDB of our own (the same binary and recipe Pollen embeds, from dist/), on a free
 * loopback port with a temporary store, for benchmarks that point Pollen's MONGODB_URI at it.
 */
export async function startFerretDB() {
  const { startEmbeddedFerretDB } = await import(pathToFileURL(path.join(REPO, 'dist/db/embedded-ferretdb.js')).href);
  const { pino } = await import('pino');
  const ferretdb = await startEmbeddedFerretDB(tempDir('pollen-bench-ferretdb-'), pino({ level: 'warn' }));
  onCleanup(() => ferretdb.stop());
  return ferretdb; // { uri: 'mongodb://127.0.0.1:PORT/', pid, stop() }
}

/**
 * A loopback proxy in front of a MongoDB-wire server that counts the commands clients send, by
 * name; `take()` lists those since the last call. Stopped at cleanup.
 */
export async function startCommandCounter(targetUri) {
  const counter = await MongoCommandCounter.start(targetUri);
  onCleanup(() => counter.stop());
  return counter;
}

// ----------------------------------------------------------------------- process figures

export { cpuSeconds, processMemory } from '../test/support/process-figures.mjs';

/** Resets VmHWM to the current RSS (needs root or the process's owner). */
export function resetPeakMemory(pid) {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** Samples a process's VmRSS every `everyMs` until stop(), which returns the highest seen. */
export function sampleRss(pid, everyMs = 2) {
  let max = processMemory(pid).rss;
  let samples = 1;
  const timer = setInterval(() => {
    max = Math.max(max, processMemory(pid).rss);
    samples += 1;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      max = Math.max(max, processMemory(pid).rss);
      return { max, samples: samples + 1 };
    },
  };
}

/** The share of one core a process used over the next `windowMs`. */
export async function cpuShare(pid, windowMs = 1000) {
  const before = cpuSeconds(pid);
  await sleep(windowMs);
  return (cpuSeconds(pid) - before) / (windowMs / 1000);
}

/** Waits until a process has used less than `busyShare` of one core over `windowMs` (false if `timeoutMs` passed first). */
export async function untilQuiet(pid, { busyShare = 0.05, windowMs = 1000, timeoutMs = 120_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cpuShare(pid, windowMs) < busyShare) return true;
  }
  return false;
}

/** The first child process of `pid` whose command line matches `pattern` (e.g. Pollen's embedded FerretDB). */
export function childPid(pid, pattern) {
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean)) {
      if (pattern.test(readFileSync(`/proc/${child}/cmdline`, 'utf8').replaceAll('\0', ' '))) return Number(child);
    }
  }
  return undefined;
}

/**
 * A DevTools-protocol client for a Pollen started with `nodeArgs: ['--inspect=127.0.0.1:0']`
 * (loopback only): forced full garbage collections and process.memoryUsage() from inside.
 */
export async function inspectPollen(pollen) {
  const line = pollen.output.find((text) => text.startsWith('Debugger listening on ws://'));
  if (!line) throw new Error('Pollen was not started with --inspect');
  const socket = new WebSocket(line.slice('Debugger listening on '.length).trim());
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  onCleanup(() => socket.close());
  let lastId = 0;
  const pending = new Map();
  socket.on('message', (data) => {
    const message = JSON.parse(data);
    pending.get(message.id)?.(message);
    pending.delete(message.id);
  });
  const send = (method, params = {}) => new Promise((resolve) => {
    const id = ++lastId;
    pending.set(id, resolve);
    socket.send(JSON.stringify({ id, method, params }));
  });
  return {
    collectGarbage: () => send('HeapProfiler.collectGarbage'),
    async memoryUsage() {
      const answer = await send('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
      return JSON.parse(answer.result.result.value);
    },
  };
}

// --------------------------------------------------------------------- API, archives, jobs

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

/** Zips a folder the way a user would, leaving caches out; `extra` adds files ({ path: bytes }). */
export async function zipDirectory(dir, extra = {}) {
  const zip = new JSZip();
  for (const [name, bytes] of Object.entries(readTree(dir))) zip.file(name, bytes);
  // Like Info-ZIP, store what deflate cannot shrink (random data) instead of growing it.
  for (const [name, bytes] of Object.entries(extra)) zip.file(name, bytes, { compression: 'STORE' });
  return zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
}

/** The files of a folder, caches left out, as { 'relative/path': Buffer }. */
export function readTree(dir) {
  const files = {};
  const walk = (relative) => {
    for (const entry of readdirSync(path.join(dir, relative), { withFileTypes: true })) {
      if (['__pycache__', '.venv'].includes(entry.name) || entry.name.endsWith('.pyc')) continue;
      const child = path.posix.join(relative, entry.name);
      if (entry.isDirectory()) walk(child);
      else files[child] = readFileSync(path.join(dir, child));
    }
  };
  walk('');
  return files;
}

export const BENCH_PASSWORD = 'Bench-password-1';

/** Signs a new user up; `token` is the access token. */
export async function registerUser(pollen, username) {
  const { register } = await graphql(pollen.url, null,
    'mutation($input: RegisterInput!) { register(input: $input) { accessToken user { id username } } }',
    { input: { username, email: `${username}@example.com`, password: BENCH_PASSWORD } });
  return { token: register.accessToken, userId: register.user.id, username: register.user.username };
}

export async function createProject(pollen, token, name) {
  const { createProject: created } = await graphql(pollen.url, token,
    'mutation($input: CreateProjectInput!) { createProject(input: $input) { id } }', { input: { name } });
  return created.id;
}

export async function addProjectMember(pollen, token, projectId, username, role) {
  await graphql(pollen.url, token,
    `mutation($projectId: ID!, $username: String!, $role: ProjectRole!) {
      addProjectMember(projectId: $projectId, username: $username, role: $role) { id }
    }`,
    { projectId, username, role });
}

/**
 * Sends `uploadApp` as a GraphQL multipart request (`operations`, `map`, then the file as part
 * "0") and returns the HTTP status with the parsed body, errors included, unchecked.
 */
export async function postAppUpload(pollen, token, projectId, bytes, filename = 'app.zip') {
  const form = new FormData();
  form.set('operations', JSON.stringify({
    query: 'mutation($projectId: ID!, $file: Upload!) { uploadApp(projectId: $projectId, file: $file) { id sizeBytes } }',
    variables: { projectId, file: null },
  }));
  form.set('map', JSON.stringify({ 0: ['variables.file'] }));
  form.set('0', new Blob([bytes]), filename);
  const response = await fetch(pollen.url, {
    method: 'POST',
    headers: { 'apollo-require-preflight': 'true', authorization: `Bearer ${token}` },
    body: form,
  });
  return { status: response.status, body: await response.json() };
}

/** Uploads an app archive that must be accepted; returns the app's id. */
export async function uploadApp(pollen, token, projectId, bytes, filename) {
  return dataOf((await postAppUpload(pollen, token, projectId, bytes, filename)).body).uploadApp.id;
}

export async function createTrainingConfig(pollen, token, projectId, { rounds, clients }) {
  const { createTrainingConfig: created } = await graphql(pollen.url, token,
    'mutation($input: CreateTrainingConfigInput!) { createTrainingConfig(input: $input) { id } }',
    { input: { projectId, name: `${rounds} rounds`, rounds, clients, learningRate: 0.1 } });
  return created.id;
}

/** A fresh user with a project, the digits app and a training config: all a job needs. */
export async function prepareDigitsJob(pollen, { rounds, clients }) {
  const name = `bench${Date.now()}`;
  const { token, username } = await registerUser(pollen, name);
  const projectId = await createProject(pollen, token, name);
  const appId = await uploadApp(pollen, token, projectId, await zipDirectory(DIGITS_APP), 'digits-app.zip');
  const configId = await createTrainingConfig(pollen, token, projectId, { rounds, clients });
  return { token, username, projectId, appId, configId };
}

export async function startTraining(pollen, job, { federation = 'LOCAL' } = {}) {
  const { startTraining: started } = await graphql(pollen.url, job.token,
    'mutation($input: StartTrainingInput!) { startTraining(input: $input) { id } }',
    { input: { appId: job.appId, configId: job.configId, federation } });
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
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
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

// ------------------------------------------------------------------------ seeded history

/**
 * A finished job and its metrics shaped as Pollen stores them (src/modules/training/*.model.ts):
 * every metric in round_metrics, each phase's newest also on the job. `metricsOf(round)` lists a
 * round's [phase, values] pairs in the order Flower reports them (round 0: an initial evaluation).
 */
export function finishedJob({ projectId, appId, configId, userId, createdAt, rounds, lastRound = rounds, failed = false, flowerRunId, metricsOf }) {
  const { ObjectId } = mongoose.mongo;
  const _id = new ObjectId();
  const at = (round, step) => new Date(createdAt.getTime() + 15_000 + round * 7_000 + step * 1_000);
  const metrics = [];
  const latest = new Map();
  for (let round = 0; round <= lastRound; round++) {
    metricsOf(round).forEach(([phase, values], step) => {
      const record = { round, phase, valuesJson: JSON.stringify(values), recordedAt: at(round, step) };
      metrics.push({ _id: new ObjectId(), jobId: _id, ...record, __v: 0 });
      latest.set(phase, record);
    });
  }
  const finishedAt = at(lastRound, 3);
  const job = {
    _id, projectId: new ObjectId(projectId), appId: new ObjectId(appId), configId: new ObjectId(configId),
    status: failed ? 'FAILED' : 'COMPLETED',
    statusReason: failed ? `Flower run ended FAILED at round ${lastRound}: ClientApp raised an exception` : null,
    federation: 'LOCAL', clients: 2, currentRound: lastRound, totalRounds: rounds,
    runConfigJson: JSON.stringify({ 'num-server-rounds': rounds, 'learning-rate': 0.1 }),
    stopRule: null, keepCheckpoints: 3, checkpointsSizeBytes: 0, parentId: null, parentRound: null, initialCheckpointId: null,
    latestMetricsJson: JSON.stringify(['TRAIN', 'EVALUATE', 'SERVER_EVALUATE'].flatMap((phase) => latest.get(phase) ?? [])),
    flowerRunId, lease: null, cancelRequestedAt: null,
    createdById: new ObjectId(userId), createdAt, updatedAt: finishedAt, startedAt: createdAt, finishedAt, __v: 0,
  };
  return { job, metrics };
}

/**
 * The metrics of a digits-app run as `finishedJob({ metricsOf })` wants them: round 0's server-side
 * evaluation, then TRAIN, EVALUATE and SERVER_EVALUATE for each round, improving with the round.
 */
export function digitsRoundMetrics(rounds) {
  return (round) => {
    if (round === 0) return [['SERVER_EVALUATE', { test_loss: 2.3, test_acc: 0.1 }]];
    const done = round / rounds;
    return [['TRAIN', { train_loss: 2.2 - done }], ['EVALUATE', { eval_loss: 2.0 - done, eval_acc: 0.8 + done / 10 }],
      ['SERVER_EVALUATE', { test_loss: 1.9 - done, test_acc: 0.82 + done / 10 }]];
  };
}

/** Writes finishedJob()s straight into a database (MONGODB_URI + name), in batches of 1,000 (FerretDB takes large inserts better in parts). */
export async function insertFinishedJobs(uri, database, seeded) {
  const client = new mongoose.mongo.MongoClient(`${uri}${database}`);
  const inBatches = async (collection, docs) => {
    for (let i = 0; i < docs.length; i += 1000) await collection.insertMany(docs.slice(i, i + 1000));
  };
  try {
    const db = client.db(database);
    const metrics = seeded.flatMap((one) => one.metrics);
    progress(`inserting ${seeded.length} jobs, ${metrics.length} metrics`);
    await inBatches(db.collection('training_jobs'), seeded.map((one) => one.job));
    await inBatches(db.collection('round_metrics'), metrics);
  } finally {
    await client.close();
  }
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

/** Bytes as MB (10^6) or KB (10^3), the units of the targets. */
export const mb = (bytes) => (Number.isFinite(bytes) ? (bytes / 1e6).toFixed(1) : '-');
export const kb = (bytes) => (Number.isFinite(bytes) ? (bytes / 1e3).toFixed(1) : '-');
export const ratio = (value, base) => (Number.isFinite(value / base) ? `${(value / base).toFixed(2)}x` : '-');

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
