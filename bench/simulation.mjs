// SIMULATION at scale: (1) the memory of a SIMULATION job of the digits app by number of virtual
// clients (peak summed VmRSS of the job's processes, sampled while it runs, and how it grows per
// client), its duration, round time and final accuracy; (2) round time of LOCAL against SIMULATION
// for the same app and the same numbers of clients, in the same run. One Pollen for everything,
// with its defaults (SIMULATION_CPUS = half the cores), one job at a time.
//
//   node bench/simulation.mjs [--clients=10,100,1000] [--rounds=3] [--compare-clients=2,10] [--compare-rounds=5]
//                             [--sample-ms=250] [--timeout-minutes=60]
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';
import {
  connectWebSocket, graphql, listOption, loadAverage, mb, median, option, prepareDigitsJob, printTable, processMemory,
  progress, ratio, runBenchmark, startPollen, startTraining, subscribe, untilJobEnds, within,
} from './lib.mjs';

// fromRound 0 replays anything stored before the subscription started, so no metric is missed.
const ROUND_METRICS = 'subscription($jobId: ID!) { roundMetrics(jobId: $jobId, fromRound: 0) { round phase values } }';
const seconds = (msValue) => (Number.isFinite(msValue) ? (msValue / 1000).toFixed(msValue < 10_000 ? 2 : 1) : '-');
/** value/base like ratio(), with three significant digits when it is far below 1. */
const fineRatio = (value, base) => (Number.isFinite(value / base) && value / base < 0.1 ? `${(value / base).toPrecision(3)}x` : ratio(value, base));

await runBenchmark(async () => {
  const clientCounts = listOption('clients', [10, 100, 1000]);
  const rounds = option('rounds', 3);
  const compareClients = listOption('compare-clients', [2, 10]);
  const compareRounds = option('compare-rounds', 5);
  const sampleMs = option('sample-ms', 250);
  const timeoutMs = option('timeout-minutes', 60) * 60_000;
  const loadBefore = loadAverage();
  console.log(`load average before: ${loadBefore}; ${availableParallelism()} cores, SIMULATION_CPUS default ` +
    `${Math.max(1, Math.floor(availableParallelism() / 2))}`);

  // Long jobs outlive the default 15 min access token; each job on a federation of its own (WARM_FEDERATION=0), so that
  // one job's figures hold none of the federation the job before left waiting; LOCAL may start as many SuperNodes as the
  // comparison asks for. Nothing else differs from Pollen's defaults.
  const pollen = await startPollen({
    env: { ACCESS_TOKEN_TTL: '4h', WARM_FEDERATION: '0', MAX_LOCAL_SUPERNODES: String(Math.max(8, ...compareClients)) },
  });
  const run = (clients, jobRounds, federation) => runJob(pollen, { clients, rounds: jobRounds, federation, sampleMs, timeoutMs });

  // ---------------------------------------------------------------- 1. memory by virtual clients
  const scale = [];
  for (const clients of clientCounts) scale.push(await run(clients, rounds, 'SIMULATION'));

  console.log(`\n1. SIMULATION memory by virtual clients: the digits app, ${rounds} rounds, one job at a time on one Pollen; ` +
    `the job's processes (command line naming DATA_DIR/local-federations or a /tmp/pollen-ray-* link into it, or working ` +
    `directory under either) sampled every ${sampleMs} ms; RSS summed over them (shared pages count once per process), PSS (smaps_rollup) ` +
    'shares them out; MB = 10^6 bytes; per round = (last TRAIN - first TRAIN) / (rounds - 1), as received by a subscriber');
  printTable(['clients', 'status', 'peak RSS MB', 'peak PSS MB', 'peak procs', 'procs seen', 'samples', 'start->first TRAIN s',
    's/round after 1', 'start->COMPLETED s', 'final test_acc', 'Pollen RSS MB', 'load at start'],
  scale.map((row) => [row.clients, row.status, mb(row.peakRss), mb(row.peakPss), row.peakCount, row.processesSeen, row.samples,
    seconds(row.firstTrainMs), seconds(row.perRoundAfterFirstMs), seconds(row.totalMs), row.finalAcc?.toFixed(4) ?? '-',
    mb(row.pollenRss), row.loadAtStart]));

  console.log('\ngrowth of the peak per extra virtual client');
  printTable(['from -> to', 'peak RSS MB', 'RSS MB per client', 'peak PSS MB', 'PSS MB per client'],
    scale.slice(1).map((row, i) => {
      const before = scale[i];
      const extra = row.clients - before.clients;
      return [`${before.clients} -> ${row.clients}`, `${mb(before.peakRss)} -> ${mb(row.peakRss)}`, mbPer(row.peakRss - before.peakRss, extra),
        `${mb(before.peakPss)} -> ${mb(row.peakPss)}`, mbPer(row.peakPss - before.peakPss, extra)];
    }));

  console.log('\nwhat the peak RSS sample held (process name x count: MB)');
  for (const row of scale) console.log(`  ${row.clients} clients: ${row.composition}`);

  // ------------------------------------------------------------- 2. round time, LOCAL vs SIMULATION
  const compared = [];
  for (const clients of compareClients) {
    for (const federation of ['LOCAL', 'SIMULATION']) compared.push(await run(clients, compareRounds, federation));
  }

  console.log(`\n2. round time, LOCAL vs SIMULATION: the digits app, ${compareRounds} rounds, same Pollen, in turn; per round = ` +
    'median gap between consecutive TRAIN metrics as received by a subscriber');
  printTable(['clients', 'federation', 'status', 'start->first TRAIN s', 's/round (median)', 'rounds gaps s', 'start->COMPLETED s',
    'final test_acc', 'peak RSS MB', 'peak procs', 'load at start'],
  compared.map((row) => [row.clients, row.federation, row.status, seconds(row.firstTrainMs), seconds(row.medianGapMs),
    row.gapsMs.map(seconds).join(' ') || '-', seconds(row.totalMs), row.finalAcc?.toFixed(4) ?? '-',
    mb(row.peakRss), row.peakCount, row.loadAtStart]));

  console.log('\nSIMULATION / LOCAL');
  printTable(['clients', 'start->first TRAIN', 's/round', 'start->COMPLETED', 'peak RSS'],
    compareClients.map((clients) => {
      const local = compared.find((row) => row.clients === clients && row.federation === 'LOCAL');
      const simulation = compared.find((row) => row.clients === clients && row.federation === 'SIMULATION');
      return [clients, fineRatio(simulation.firstTrainMs, local.firstTrainMs), fineRatio(simulation.medianGapMs, local.medianGapMs),
        fineRatio(simulation.totalMs, local.totalMs), fineRatio(simulation.peakRss, local.peakRss)];
    }));

  const failed = [...scale, ...compared].filter((row) => row.status !== 'COMPLETED');
  for (const row of failed) {
    console.log(`\n${row.federation} ${row.clients} clients ended ${row.status}: ${row.reason}`);
    if (row.logTail) console.log(`last ServerApp lines:\n${row.logTail}`);
  }
  console.log(`\nload average before: ${loadBefore}; after: ${loadAverage()}`);
  if (failed.length > 0) throw new Error(`${failed.length} job(s) did not complete: ${failed.map((row) => `${row.federation} ${row.clients}`).join(', ')}`);
});

function mbPer(bytes, clients) {
  return Number.isFinite(bytes / clients) ? (bytes / 1e6 / clients).toFixed(3) : '-';
}

/**
 * Runs one digits-app job to its end while sampling its processes' memory; its figures. A job that
 * does not complete gives a row with its status and reason (and the ServerApp's last lines) instead
 * of failing the benchmark at once, so that the other sizes are still measured.
 */
async function runJob(pollen, { clients, rounds, federation, sampleMs, timeoutMs }) {
  progress(`${federation} ${clients} clients, ${rounds} rounds`);
  const job = await prepareDigitsJob(pollen, { rounds, clients });
  const loadAtStart = loadavg()[0].toFixed(2);
  const client = await connectWebSocket(pollen.wsUrl, job.token);
  const startedAt = Date.now();
  const jobId = await startTraining(pollen, job, { federation });
  const sampler = sampleJobProcesses(pollen, jobId, sampleMs);
  const trains = [];
  let finalAcc;
  const metrics = subscribe(client, ROUND_METRICS, { jobId }, ({ roundMetrics: metric }) => {
    if (metric.phase === 'TRAIN') {
      trains.push(Date.now());
      progress(`  ${federation} ${clients}: round ${metric.round} TRAIN at ${seconds(Date.now() - startedAt)} s, ` +
        `${sampler.now().count} processes, ${mb(sampler.now().rss)} MB now`);
    }
    if (metric.phase === 'SERVER_EVALUATE' && metric.round === rounds) finalAcc = metric.values.test_acc;
  });
  let status = 'COMPLETED';
  let reason = null;
  let totalMs = NaN;
  try {
    await within(timeoutMs, untilJobEnds(client, jobId), `${federation} job ${jobId} with ${clients} clients`);
    totalMs = Date.now() - startedAt;
    await within(30_000, metrics, 'the roundMetrics stream to complete');
  } catch (error) {
    status = /ended (\w+):/.exec(error.message)?.[1] ?? 'TIMED OUT';
    reason = error.message;
    if (status === 'TIMED OUT') {
      // Still running: cancel it, or the next job would wait behind it.
      await graphql(pollen.url, job.token, 'mutation($id: ID!) { cancelTraining(id: $id) { status } }', { id: jobId })
        .catch((cancelError) => progress(`  could not cancel ${jobId}: ${cancelError.message}`));
    }
  }
  const memory = sampler.stop();
  let logTail = null;
  if (status !== 'COMPLETED') {
    try {
      const { trainingJob } = await graphql(pollen.url, job.token,
        'query($id: ID!) { trainingJob(id: $id) { status statusReason logs(last: 40) { line } } }', { id: jobId });
      reason = `${trainingJob.status}: ${trainingJob.statusReason ?? reason}`;
      logTail = trainingJob.logs.map(({ line }) => `  ${line}`).join('\n');
    } catch (error) {
      logTail = `(could not read the job: ${error.message})`;
    }
  }
  const gapsMs = trains.slice(1).map((at, i) => at - trains[i]);
  const row = {
    clients, federation, jobId, status, reason, logTail, totalMs, finalAcc, gapsMs, loadAtStart,
    firstTrainMs: trains.length > 0 ? trains[0] - startedAt : NaN,
    perRoundAfterFirstMs: trains.length > 1 ? (trains.at(-1) - trains[0]) / (trains.length - 1) : NaN,
    medianGapMs: gapsMs.length > 0 ? median(gapsMs) : NaN,
    ...memory,
  };
  progress(`  ${federation} ${clients}: ${status} in ${seconds(totalMs)} s, peak ${mb(row.peakRss)} MB RSS over ${row.peakCount} processes`);
  return row;
}

/**
 * Samples every `everyMs` the processes of one job (the only one running, on a federation of its
 * own): those whose command line names Pollen's federations (DATA_DIR/local-federations) or Ray's
 * short link into it (/tmp/pollen-ray-*), or whose working directory is under either. Sums their VmRSS and their PSS (smaps_rollup), keeps the
 * peaks, the largest process count and what the peak RSS sample held; also Pollen's own RSS peak.
 */
function sampleJobProcesses(pollen, everyMs) {
  const federationsDir = path.join(realpathSync(pollen.dataDir), 'local-federations');
  const rayLinks = () => readdirSync(tmpdir()).filter((name) => name.startsWith('pollen-ray-')).map((name) => path.join(tmpdir(), name))
    .filter((link) => {
      try {
        return readlinkSync(link).startsWith(`${federationsDir}/`);
      } catch {
        return false;
      }
    });
  const under = (text, dir) => text === dir || text.startsWith(`${dir}/`) || text.startsWith(`${dir} `);
  let peakRss = 0;
  let peakPss = 0;
  let peakCount = 0;
  let pollenRss = 0;
  let samples = 0;
  let composition = '';
  let last = { rss: 0, count: 0 };
  const seen = new Set();
  const sample = () => {
    const dirs = [federationsDir, ...rayLinks()];
    let rss = 0;
    let pss = 0;
    let count = 0;
    const byName = new Map();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
      try {
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
        let cwd = '';
        try {
          cwd = readlinkSync(`/proc/${entry}/cwd`);
        } catch {
          // not ours to read, or gone
        }
        if (!dirs.some((dir) => cmdline.includes(`${dir}/`) || cmdline.includes(`${dir} `) || under(cwd, dir))) continue;
        const status = readFileSync(`/proc/${entry}/status`, 'utf8');
        const processRss = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
        if (processRss === 0) continue; // a zombie, or exiting
        let processPss = 0;
        try {
          processPss = Number(/^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${entry}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
        } catch {
          // gone meanwhile
        }
        const name = processName(/^Name:\s+(.*)$/m.exec(status)?.[1] ?? '?', cmdline);
        const slot = byName.get(name) ?? { count: 0, rss: 0 };
        byName.set(name, { count: slot.count + 1, rss: slot.rss + processRss });
        rss += processRss;
        pss += processPss;
        count += 1;
        seen.add(`${entry}/${name}`);
      } catch {
        // the process ended while we read it
      }
    }
    samples += 1;
    last = { rss, count };
    peakPss = Math.max(peakPss, pss);
    peakCount = Math.max(peakCount, count);
    if (rss > peakRss) {
      peakRss = rss;
      composition = [...byName].sort(([, a], [, b]) => b.rss - a.rss)
        .map(([name, { count: n, rss: bytes }]) => `${name} x${n}: ${mb(bytes)}`).join(', ');
    }
    try {
      pollenRss = Math.max(pollenRss, processMemory(pollen.pid).rss);
    } catch {
      // Pollen gone: the benchmark fails elsewhere
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    now: () => last,
    stop() {
      clearInterval(timer);
      return { peakRss, peakPss, peakCount, processesSeen: seen.size, samples, composition, pollenRss };
    },
  };
}

/** A process's name, for a Python one with its script or module (`python process_guard.py`, `python -m ray...`). */
function processName(name, cmdline) {
  if (!/^python/.test(name)) return name;
  const args = cmdline.trim().split(' ');
  const module = args.indexOf('-m');
  if (module >= 0 && args[module + 1]) return `python -m ${args[module + 1]}`;
  const script = args.slice(1).find((arg) => /\.py$/.test(arg) || arg.includes('/bin/'));
  return script ? `python ${path.basename(script)}` : name;
}
