// Aggregation -> subscriber latency of roundMetrics: one digits-app job watched by K graphql-ws
// subscribers, each metric's receipt time minus its recordedAt (the shim's stamp right after
// aggregation, same machine clock). Baseline, sampled on the same websocket during the same run:
// the round trip of a trivial `{ me { id } }` query, i.e. what Pollen's GraphQL layer costs anyway.
//
//   node bench/metric-latency.mjs [--rounds=30] [--subscribers=10] [--probe-interval=200]
import {
  connectWebSocket, loadAverage, ms, option, prepareDigitsJob, printTable, runBenchmark, sleep, startPollen,
  startTraining, subscribe, summarize, untilJobEnds, within,
} from './lib.mjs';

const TARGET_P99_MS = 250;

const ROUND_METRICS = `subscription($jobId: ID!) { roundMetrics(jobId: $jobId) { round phase values recordedAt } }`;

await runBenchmark(async () => {
  const rounds = option('rounds', 30);
  const subscribers = option('subscribers', 10);
  const probeIntervalMs = option('probe-interval', 200);
  const loadBefore = loadAverage();

  const pollen = await startPollen();
  const job = await prepareDigitsJob(pollen, { rounds, clients: 2 });
  const clients = await Promise.all(Array.from({ length: subscribers }, () => connectWebSocket(pollen.wsUrl, job.token)));

  // Subscribing right after startTraining is safe: the first metric needs a SuperLink, two
  // SuperNodes and a ServerApp to start, which takes seconds. Live-only (no fromRound), so a
  // replayed metric never counts as a slow delivery.
  const jobId = await startTraining(pollen, job);
  const latencies = [];
  const receipts = new Map(); // "round phase" -> { recordedAt, receipt times over all subscribers }
  const delivered = clients.map((client) => subscribe(client, ROUND_METRICS, { jobId }, ({ roundMetrics: metric }) => {
    const receivedAt = Date.now();
    const recordedAt = Date.parse(metric.recordedAt);
    latencies.push(receivedAt - recordedAt);
    const key = `round ${metric.round} ${metric.phase}`;
    if (!receipts.has(key)) receipts.set(key, { recordedAt, times: [] });
    receipts.get(key).times.push(receivedAt);
  }));

  // Probe the GraphQL round trip on subscriber 0's websocket until the job ends.
  const roundTrips = [];
  let running = true;
  const probing = (async () => {
    while (running) {
      const sentAt = performance.now();
      await subscribe(clients[0], '{ me { id } }', {}, () => roundTrips.push(performance.now() - sentAt));
      await sleep(probeIntervalMs);
    }
  })();

  const timeoutMs = (120 + rounds * 60) * 1000; // rounds take ~7 s idle, ~20 s on a busy 2-core host
  try {
    await within(timeoutMs, Promise.all([untilJobEnds(clients[0], jobId), ...delivered]), `job ${jobId} to finish`);
  } finally {
    running = false;
  }
  await probing;

  // Round 0's server-side evaluation, then TRAIN, EVALUATE and SERVER_EVALUATE per round.
  const expectedPerSubscriber = 1 + 3 * rounds;
  const fanOutSpreads = [...receipts.values()].map(({ times }) => Math.max(...times) - Math.min(...times));
  const slowest = [...receipts].map(([key, { recordedAt, times }]) => [key, Math.max(...times) - recordedAt])
    .sort((a, b) => b[1] - a[1]).slice(0, 3);
  const latency = summarize(latencies);
  const baseline = summarize(roundTrips);
  const spread = summarize(fanOutSpreads);

  console.log(`\nmetric latency: ${rounds} rounds, 2 clients, ${subscribers} subscribers; ` +
    `${latencies.length} samples (expected ${expectedPerSubscriber} x ${subscribers} = ${expectedPerSubscriber * subscribers})`);
  printTable(['ms', 'count', 'p50', 'p90', 'p99', 'max'], [
    ['recordedAt -> subscriber', latency.count, ms(latency.p50), ms(latency.p90), ms(latency.p99), ms(latency.max)],
    ['baseline { me { id } } RTT', baseline.count, ms(baseline.p50), ms(baseline.p90), ms(baseline.p99), ms(baseline.max)],
    ['fan-out spread (last-first)', spread.count, ms(spread.p50), ms(spread.p90), ms(spread.p99), ms(spread.max)],
  ]);
  console.log(`slowest metrics (last subscriber): ${slowest.map(([key, late]) => `${key} ${ms(late)} ms`).join('; ')}`);
  console.log(`latency/baseline: p50 ${(latency.p50 / baseline.p50).toFixed(1)}x, p99 ${(latency.p99 / baseline.p99).toFixed(1)}x`);
  console.log(`target p99 <= ${TARGET_P99_MS} ms: ${latency.p99 <= TARGET_P99_MS ? 'met' : 'MISSED'} (p99 ${ms(latency.p99)} ms)`);
  console.log(`load average before: ${loadBefore}; after: ${loadAverage()}`);
});
