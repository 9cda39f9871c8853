// What refusing each hostile document costs Pollen: mean CPU (user + system, /proc, 10 ms
// ticks, so over many sends) of one send of each document of test/support/hostile-documents.mjs, anonymous,
// over HTTP and over graphql-ws, against the cost of `{ me { id } }` measured in the same run, and
// the longest /healthz wait meanwhile. Target: at most 50 ms of CPU per refusal.
//
//   node bench/hostile-documents.mjs [--repeats=25]
import { HOSTILE } from '../test/support/hostile-documents.mjs';
import {
  connectWebSocket, cpuSeconds, loadAverage, ms, option, printTable, progress, ratio, runBenchmark, startPollen,
} from './lib.mjs';

const TARGET_CPU_MS = 50;

await runBenchmark(async () => {
  const repeats = option('repeats', 25);
  const loadBefore = loadAverage();
  const pollen = await startPollen({ env: { MAX_CONCURRENT_JOBS: '0' } });
  const socket = await connectWebSocket(pollen.wsUrl, undefined);

  const overHttp = (doc) => fetch(`${pollen.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: doc.query, variables: doc.variables, operationName: doc.operationName }),
  }).then((response) => response.text());
  const overWs = (doc) => new Promise((resolve) => {
    socket.subscribe({ query: doc.query, variables: doc.variables, operationName: doc.operationName },
      { next: () => {}, error: resolve, complete: resolve });
  });

  /** Mean CPU ms of one send, after one send to warm the code path, and the longest /healthz wait. */
  async function cost(send, doc) {
    await send(doc);
    let stopped = false;
    let longestMs = 0;
    const health = (async () => {
      while (!stopped) {
        const started = performance.now();
        await (await fetch(`${pollen.url}/healthz`)).text();
        longestMs = Math.max(longestMs, performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const before = cpuSeconds(pollen.pid);
    for (let i = 0; i < repeats; i += 1) await send(doc);
    const cpuMs = ((cpuSeconds(pollen.pid) - before) * 1000) / repeats;
    stopped = true;
    await health;
    return { cpuMs, longestMs };
  }

  const baselineDoc = { name: '{ me { id } } (baseline)', query: '{ me { id } }' };
  const rows = [];
  for (const doc of [baselineDoc, ...HOSTILE]) {
    progress(doc.name);
    rows.push({ name: doc.name, http: await cost(overHttp, doc), ws: await cost(overWs, doc) });
  }
  const [baseline] = rows;
  const worst = Math.max(...rows.slice(1).flatMap((row) => [row.http.cpuMs, row.ws.cpuMs]));
  console.log(`\nhostile documents, anonymous: Pollen CPU of one refusal, mean of ${repeats} sends, ` +
    `longest /healthz wait meanwhile; load average before: ${loadBefore}`);
  printTable(['document', 'HTTP CPU ms', 'HTTP / baseline', 'WS CPU ms', 'WS / baseline', 'longest /healthz ms'], rows.map((row) => [
    row.name, ms(row.http.cpuMs), ratio(row.http.cpuMs, baseline.http.cpuMs), ms(row.ws.cpuMs), ratio(row.ws.cpuMs, baseline.ws.cpuMs),
    ms(Math.max(row.http.longestMs, row.ws.longestMs)),
  ]));
  console.log(`\nworst refusal: ${ms(worst)} ms of CPU (target ≤ ${TARGET_CPU_MS} ms: ${worst <= TARGET_CPU_MS ? 'met' : 'missed'})`);
  await socket.dispose();
});
