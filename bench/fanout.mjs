// Subscription fan-out: N authenticated graphql-ws subscribers (members of the project) on one
// real digits-app job's roundMetrics(jobId). For every delivery, receipt time minus the metric's
// recordedAt (the shim's stamp right after aggregation, same machine clock); for every metric, the
// time until the LAST subscriber had it; and Pollen's RSS per subscriber (VmRSS after all N are
// connected and subscribed minus before, divided by N; also the live V8 heap after a forced full
// GC, through a loopback --inspect). Baseline, same run: the same with a few subscribers. Each N
// gets a fresh Pollen.
//
//   node bench/fanout.mjs [--subscribers=1000,5000] [--baseline=1] [--rounds=8] [--workers=4] [--members=10]
//     [--connect-batch=50]
//
// The subscribers live in worker threads (see README): one event loop receiving 5,000 frames per
// metric would itself delay the last receipts, and the figure must be Pollen's, not the client's.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import {
  addProjectMember, childPid, connectWebSocket, cpuSeconds, cpuShare, createTrainingConfig, graphql, inspectPollen, kb,
  listOption, loadAverage, mb, ms, onCleanup, option, prepareDigitsJob, printTable, processMemory, progress, ratio,
  registerUser, runBenchmark, sleep, startPollen, startTraining, subscribe, summarize, untilJobEnds, untilQuiet, within,
} from './lib.mjs';

const TARGET_LAST_MS = 1000;
const TARGET_KB_PER_SUBSCRIBER = 30;
const MIN_FOR_MEMORY = 100; // fewer subscribers: per-subscriber memory is noise
const perSubscriber = (run, bytes) => (run.subscribers >= MIN_FOR_MEMORY ? kb(bytes) : '-');
const ROUND_METRICS = 'subscription($jobId: ID!) { roundMetrics(jobId: $jobId) { round phase values recordedAt } }';

if (isMainThread) {
  await runBenchmark(main);
} else {
  await subscriberWorker(workerData);
}

async function main() {
  const sizes = listOption('subscribers', [1000, 5000]);
  const baselineSize = option('baseline', 1);
  const rounds = option('rounds', 8);
  const workers = option('workers', 4);
  const members = option('members', 10);
  const connectBatch = option('connect-batch', 50); // connections a worker opens at once
  const loadBefore = loadAverage();

  const runs = [];
  for (const subscribers of [baselineSize, ...sizes]) {
    const threads = Math.min(workers, Math.ceil(subscribers / connectBatch));
    runs.push(await fanOut({ subscribers, rounds, workers: threads, members, connectBatch }));
  }

  const [baseline] = runs;
  // Live heap per subscriber: the heap after a full GC, against the baseline run's (a fresh Pollen
  // that went through the same steps), so that no GC is forced before the RSS readings.
  for (const run of runs.slice(1)) {
    run.liveHeapPerSubscriber = (run.heapAfterGc - baseline.heapAfterGc) / (run.subscribers - baseline.subscribers);
  }
  const expected = 1 + 3 * rounds;
  console.log(`\nfan-out: roundMetrics of one digits-app job (${rounds} rounds, 2 clients, ${expected} metrics); ` +
    `subscribers are ${members} project members + the owner, spread over worker threads; KB/MB = 10^3/10^6 bytes`);
  printTable(['subscribers', 'deliveries', 'p50 ms', 'p99 ms', 'max ms', 'last sub. p50 ms', 'last sub. max ms', 'RSS before MB',
    'RSS after MB', 'KB/subscriber', 'after GC KB/sub.', 'live heap KB/sub.', 'subscribe s', 'Pollen CPU s', 'client lag max ms'], runs.map((run) => [
    `${run.subscribers}${run === baseline ? ' (baseline)' : ''}`, `${run.latency.count}/${run.subscribers * expected}`,
    ms(run.latency.p50), ms(run.latency.p99), ms(run.latency.max), ms(run.last.p50), ms(run.last.max),
    mb(run.rssBefore), mb(run.rssAfter), perSubscriber(run, run.perSubscriber), perSubscriber(run, run.rssAfterGcPerSubscriber),
    perSubscriber(run, run.liveHeapPerSubscriber),
    (run.subscribeMs / 1000).toFixed(1), run.cpu.toFixed(1), ms(run.clientLagMax),
  ]));
  console.log(`(KB/subscriber: RSS after - before, over N, shown from ${MIN_FOR_MEMORY} subscribers on: RSS moves by MBs on its own; ` +
    'after GC: RSS after - before again, right after a forced full GC (taken after the RSS readings); ' +
    'live heap: V8 heap used after that GC, against the baseline run\'s; ' +
    'Pollen CPU s: from starting the measured job until it ended; client lag: worst event-loop delay of a subscriber thread)');
  console.log('\nratios to the baseline (same run), and Pollen CPU per extra delivery:');
  printTable(['subscribers', 'p50', 'p99', 'max', 'last sub. max', 'CPU us/extra delivery'], runs.slice(1).map((run) => [
    run.subscribers, ratio(run.latency.p50, baseline.latency.p50), ratio(run.latency.p99, baseline.latency.p99),
    ratio(run.latency.max, baseline.latency.max), ratio(run.last.max, baseline.last.max),
    (((run.cpu - baseline.cpu) / (run.latency.count - baseline.latency.count)) * 1e6).toFixed(0),
  ]));
  for (const run of runs.slice(1)) {
    console.log(`slowest metrics for ${run.subscribers} (last subscriber): ` +
      run.slowest.map(([key, late]) => `${key} ${ms(late)} ms`).join('; '));
  }
  for (const run of runs.slice(1)) {
    const complete = run.latency.count === run.subscribers * expected;
    console.log(`target ${run.subscribers} subscribers, every one within ${TARGET_LAST_MS} ms: ` +
      `${complete && run.last.max <= TARGET_LAST_MS ? 'met' : 'MISSED'} (last subscriber, worst metric: ${ms(run.last.max)} ms` +
      `${complete ? '' : `; ${run.subscribers * expected - run.latency.count} deliveries missing`}); ` +
      `memory <= ${TARGET_KB_PER_SUBSCRIBER} KB/subscriber: ${run.perSubscriber <= TARGET_KB_PER_SUBSCRIBER * 1000 ? 'met' : 'MISSED'} ` +
      `(${kb(run.perSubscriber)} KB of RSS; live heap after a full GC ${kb(run.liveHeapPerSubscriber)} KB)`);
  }
  console.log(`load average before: ${loadBefore}; after: ${loadAverage()}`);
}

/**
 * One measurement on a fresh Pollen. The job must not start before all N subscriptions are in
 * place (they are live-only), and subscribing thousands takes a while: a long "blocker" job takes
 * the only runner slot (MAX_CONCURRENT_JOBS=1) while the measured job waits QUEUED; once every
 * subscriber is in, the blocker is cancelled and the measured job starts.
 */
async function fanOut({ subscribers, rounds, workers, members, connectBatch }) {
  progress(`${subscribers} subscribers: starting Pollen`);
  // --inspect (loopback) only to force a full GC and read the live heap, after the RSS figures.
  const pollen = await startPollen({ env: { ACCESS_TOKEN_TTL: '4h', MAX_CONCURRENT_JOBS: '1' }, nodeArgs: ['--inspect=127.0.0.1:0'] });
  const inspector = await inspectPollen(pollen);
  const job = await prepareDigitsJob(pollen, { rounds, clients: 2 });
  const tokens = [job.token];
  for (let i = 0; i < members; i++) {
    const member = await registerUser(pollen, `${job.username}m${i}`);
    await addProjectMember(pollen, job.token, job.projectId, member.username, 'VIEWER');
    tokens.push(member.token);
  }
  const blockerConfigId = await createTrainingConfig(pollen, job.token, job.projectId, { rounds: 100, clients: 2 });
  const blockerId = await startTraining(pollen, { ...job, configId: blockerConfigId });
  await within(60_000, untilStatus(pollen, job.token, blockerId, (status) => status !== 'QUEUED'), 'the blocker job to be claimed');
  const jobId = await startTraining(pollen, job);
  const watcher = await connectWebSocket(pollen.wsUrl, job.token);

  // The blocker keeps Pollen and its FerretDB a little busy (log lines): note how busy, to tell
  // when the subscriptions are all processed.
  const ferretdbPid = childPid(pollen.pid, /ferretdb/);
  const busy = { pollen: await cpuShare(pollen.pid, 3000), ferretdb: await cpuShare(ferretdbPid, 3000) };
  progress(`${subscribers} subscribers: connecting over ${workers} worker thread(s)`);
  const rssBefore = processMemory(pollen.pid).rss;
  const started = performance.now();
  const threads = Array.from({ length: workers }, (_, w) => {
    const count = Math.floor(subscribers / workers) + (w < subscribers % workers ? 1 : 0);
    const workerData = { wsUrl: pollen.wsUrl, tokens, count, offset: w, jobId, connectBatch };
    const worker = new Worker(new URL(import.meta.url), { workerData });
    onCleanup(() => worker.terminate());
    const next = messages(worker);
    return { worker, next };
  });
  await Promise.all(threads.map(({ next }) => next('subscribed')));
  // Subscribing is asynchronous on the server (authorization, reads of the job and project): wait
  // until Pollen and its FerretDB are no busier than before. Any subscriber that was not ready
  // would miss round 0's metric and show as a missing delivery.
  await untilQuiet(pollen.pid, { busyShare: busy.pollen + 0.1, timeoutMs: 10 * 60_000 });
  await untilQuiet(ferretdbPid, { busyShare: busy.ferretdb + 0.1, timeoutMs: 10 * 60_000 });
  const subscribeMs = performance.now() - started;
  await sleep(2000);
  const rssAfter = processMemory(pollen.pid).rss;
  // Then, to tell garbage from what stays: the live V8 heap after a forced full GC.
  await inspector.collectGarbage();
  const { heapUsed: heapAfterGc, rss: rssAfterGc } = await inspector.memoryUsage();

  progress(`${subscribers} subscribers: cancelling the blocker; job ${jobId} starts`);
  for (const { worker } of threads) worker.postMessage('measure');
  const cpuBefore = cpuSeconds(pollen.pid);
  await graphql(pollen.url, job.token, 'mutation($id: ID!) { cancelTraining(id: $id) { status } }', { id: blockerId });
  const timeoutMs = (180 + rounds * 60) * 1000;
  const [, ...reports] = await within(timeoutMs, Promise.all([untilJobEnds(watcher, jobId), ...threads.map(({ next }) => next('done'))]),
    `job ${jobId} to finish`);
  const cpu = cpuSeconds(pollen.pid) - cpuBefore;
  await pollen.stop();

  const latencies = [];
  const byMetric = new Map();
  for (const { receipts } of reports) {
    for (const [key, { recordedAt, times }] of Object.entries(receipts)) {
      if (!byMetric.has(key)) byMetric.set(key, { recordedAt, last: -Infinity });
      const entry = byMetric.get(key);
      for (const time of times) {
        latencies.push(time - recordedAt);
        entry.last = Math.max(entry.last, time - recordedAt);
      }
    }
  }
  const lastByMetric = [...byMetric].map(([key, { last }]) => [key, last]);
  return {
    subscribers,
    latency: summarize(latencies),
    last: summarize(lastByMetric.map(([, last]) => last)),
    slowest: lastByMetric.sort((a, b) => b[1] - a[1]).slice(0, 3),
    rssBefore,
    rssAfter,
    perSubscriber: (rssAfter - rssBefore) / subscribers,
    rssAfterGcPerSubscriber: (rssAfterGc - rssBefore) / subscribers,
    heapAfterGc,
    subscribeMs,
    cpu,
    clientLagMax: Math.max(...reports.map((report) => report.lagMaxMs)),
  };
}

async function untilStatus(pollen, token, id, accept) {
  for (;;) {
    const { trainingJob } = await graphql(pollen.url, token, 'query($id: ID!) { trainingJob(id: $id) { status } }', { id });
    if (accept(trainingJob.status)) return trainingJob.status;
    await sleep(500);
  }
}

/** `next(type)` resolves with the worker's next message of that type; a worker error rejects it. */
function messages(worker) {
  const waiting = new Map(); // type -> { resolve, reject }
  const arrived = new Map(); // type -> message nobody waited for yet
  let failure;
  worker.on('message', (message) => {
    const waiter = waiting.get(message.type);
    waiting.delete(message.type);
    if (waiter) waiter.resolve(message);
    else arrived.set(message.type, message);
  });
  const fail = (error) => {
    failure = error;
    for (const waiter of waiting.values()) waiter.reject(error);
    waiting.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => code !== 0 && fail(new Error(`subscriber worker exited with ${code}`)));
  return (type) => new Promise((resolve, reject) => {
    if (arrived.has(type)) {
      resolve(arrived.get(type));
      arrived.delete(type);
    } else if (failure) reject(failure);
    else waiting.set(type, { resolve, reject });
  });
}

/**
 * Worker thread: opens `count` graphql-ws connections (tokens round-robin), subscribes each to
 * roundMetrics(jobId), notes Date.now() at every receipt, and reports when the job has ended.
 */
async function subscriberWorker({ wsUrl, tokens, count, offset, jobId, connectBatch }) {
  const clients = [];
  for (let i = 0; i < count; i += connectBatch) {
    const batch = Array.from({ length: Math.min(connectBatch, count - i) },
      (_, k) => connectWebSocket(wsUrl, tokens[(offset + i + k) % tokens.length]));
    clients.push(...await Promise.all(batch));
  }
  const receipts = {};
  const done = clients.map((client) => subscribe(client, ROUND_METRICS, { jobId }, ({ roundMetrics: metric }) => {
    const receivedAt = Date.now();
    const key = `round ${metric.round} ${metric.phase}`;
    (receipts[key] ??= { recordedAt: Date.parse(metric.recordedAt), times: [] }).times.push(receivedAt);
  }));
  parentPort.postMessage({ type: 'subscribed' });
  // How late this thread's event loop ran while the job streamed: a receipt is stamped no later than that.
  const lag = monitorEventLoopDelay({ resolution: 10 });
  parentPort.once('message', () => lag.enable());
  await Promise.all(done);
  lag.disable();
  parentPort.postMessage({ type: 'done', receipts, lagMaxMs: lag.max / 1e6 });
  await Promise.all(clients.map((client) => client.dispose()));
}
