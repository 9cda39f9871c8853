// History: the reads a dashboard makes, measured at several sizes of one project's history
// (finished jobs with their metrics), on the embedded default (FerretDB on SQLite, with Pollen's
// patch). Each read at the largest size is compared with the same read at the smallest: the
// growth factor.
//
//   node bench/history.mjs [--sizes=50,500,2000] [--samples=30] [--other-projects=50] [--rounds=8]
import {
  connectWebSocket, cpuSeconds, createProject, createTrainingConfig, digitsRoundMetrics, DIGITS_APP, finishedJob, graphql, insertFinishedJobs,
  listOption, loadAverage, ms, option, printTable, progress, registerUser, runBenchmark, startFerretDB, startPollen, subscribe,
  summarize, untilQuiet, uploadApp, zipDirectory,
} from './lib.mjs';

const DATABASE = 'pollen';
const GROWTH_TARGET = 1.5;
const P50_TARGET_MS = 30;
const JOBS_PER_OTHER_PROJECT = 4;

const LATEST = 'latestMetrics { round phase values recordedAt }';
const READS = [
  {
    name: 'page of 20 jobs with latest metrics',
    query: `query($id: ID!) { project(id: $id) { trainingJobs(first: 20) {
      edges { node { id status statusReason currentRound totalRounds createdAt finishedAt ${LATEST} } } } } }`,
    check: (data) => data.project.trainingJobs.edges.length === 20,
  },
  {
    name: "one job's full metrics",
    query: 'query($job: ID!) { trainingJob(id: $job) { metrics { round phase values recordedAt } } }',
    check: (data, { metricsPerJob }) => data.trainingJob.metrics.length === metricsPerJob,
  },
  {
    name: 'roundMetrics replay from round 0 (graphql-ws)',
    subscription: 'subscription($job: ID!) { roundMetrics(jobId: $job, fromRound: 0) { round phase values } }',
  },
  {
    name: 'page of 5 projects, 3 jobs each',
    query: `{ projects(first: 5) { totalCount edges { node { id name owner { username }
      trainingJobs(first: 3) { totalCount edges { node { id status currentRound ${LATEST} } } } } } } }`,
    check: (data) => data.projects.edges.length === 5,
  },
  {
    name: 'totalCount of jobs',
    query: 'query($id: ID!) { project(id: $id) { trainingJobs(first: 1) { totalCount } } }',
    check: (data, { jobs }) => data.project.trainingJobs.totalCount === jobs,
  },
];

await runBenchmark(async () => {
  const sizes = listOption('sizes', [50, 500, 2000]);
  const samples = option('samples', 30);
  const otherProjects = option('other-projects', 50);
  const rounds = option('rounds', 8);
  const metricsPerJob = 1 + 3 * rounds; // every job here completes
  const loadBefore = loadAverage();

  // One history per size, each in a FerretDB of its own (the one Pollen embeds) with a Pollen of
  // its own pointing at it, so that the script can seed it directly and read each process's CPU;
  // no runner, so nothing else runs meanwhile. The sizes are measured in turn, one request each,
  // so that the load of a shared machine falls on every size alike.
  const stores = [];
  for (const size of sizes) {
    progress(`a history of ${size} jobs (${size * metricsPerJob} metric records) beside ${otherProjects} other projects`);
    stores.push(await seededStore(size, { otherProjects, rounds }));
  }

  const figures = new Map(READS.map(({ name }) => [name, new Map()]));
  for (const read of READS) {
    progress(`measuring: ${read.name}`);
    const runs = stores.map((store) => ({ store, once: request(read, store, metricsPerJob), times: [] }));
    // Warm-up: JIT, connection pool, SQLite's page cache.
    for (const run of runs) for (let i = 0; i < 30; i++) await run.once();
    for (const { store } of runs) for (const pid of Object.values(store.pids)) await untilQuiet(pid, { busyShare: 0.1 });
    const before = runs.map(({ store }) => Object.fromEntries(Object.entries(store.pids).map(([name, pid]) => [name, cpuSeconds(pid)])));
    for (let i = 0; i < samples; i++) {
      for (const run of runs) {
        const started = performance.now();
        await run.once();
        run.times.push(performance.now() - started);
      }
    }
    runs.forEach(({ store, times }, i) => {
      const cpu = Object.fromEntries(Object.entries(store.pids).map(([name, pid]) => [name, ((cpuSeconds(pid) - before[i][name]) / samples) * 1000]));
      figures.get(read.name).set(store.size, { ...summarize(times), cpu });
    });
  }

  const first = sizes[0];
  const last = sizes.at(-1);
  console.log(`\nhistory: one project grows to ${sizes.join(' / ')} finished jobs with ${metricsPerJob} metric records each, ` +
    `beside ${otherProjects} other projects (${JOBS_PER_OTHER_PROJECT} jobs each); ${samples} samples per read and size, one request ` +
    'at a time, the sizes in turn');
  printTable(['read', ...sizes.map((size) => `p50 ms @${size}`), `p90 ms @${last}`, `growth ${last}/${first}`, 'target'],
    READS.map(({ name }) => {
      const bySize = figures.get(name);
      const growth = bySize.get(last).p50 / bySize.get(first).p50;
      const met = growth <= GROWTH_TARGET && bySize.get(last).p50 < P50_TARGET_MS;
      return [name, ...sizes.map((size) => ms(bySize.get(size).p50)), ms(bySize.get(last).p90), `${growth.toFixed(2)}x`, met ? 'met' : 'MISSED'];
    }));
  console.log(`(target: p50 at ${last} within ${GROWTH_TARGET}x of the p50 at ${first}, and under ${P50_TARGET_MS} ms)`);

  console.log('\nCPU per read, ms (Pollen / FerretDB)');
  printTable(['read', ...sizes.map((size) => `@${size}`)], READS.map(({ name }) => [
    name, ...sizes.map((size) => {
      const { cpu } = figures.get(name).get(size);
      return `${ms(cpu.pollen)} / ${ms(cpu.ferretdb)}`;
    }),
  ]));
  console.log(`load average before: ${loadBefore}; after: ${loadAverage()}`);
});

/**
 * A FerretDB and a Pollen holding `size` finished jobs of one project, the newest (so that it is
 * on the page of projects), beside `otherProjects` projects with a few jobs each.
 */
async function seededStore(size, { otherProjects, rounds }) {
  const ferretdb = await startFerretDB();
  const pollen = await startPollen({ env: { MONGODB_URI: `${ferretdb.uri}${DATABASE}`, MAX_CONCURRENT_JOBS: '0', JOB_LEASE: '24h' } });
  const reader = await registerUser(pollen, `historian${Date.now()}`);
  const others = [];
  for (let i = 0; i < otherProjects; i++) others.push(await createProject(pollen, reader.token, `Other ${i}`));
  const projectId = await createProject(pollen, reader.token, 'Long history');
  const appId = await uploadApp(pollen, reader.token, projectId, await zipDirectory(DIGITS_APP), 'digits-app.zip');
  const configId = await createTrainingConfig(pollen, reader.token, projectId, { rounds, clients: 2 });

  let clock = Date.now() - 100 * 24 * 3600_000;
  let index = 0;
  const insertJobs = async (project, count) => {
    const seeded = Array.from({ length: count }, () => finishedJob({
      projectId: project, appId, configId, userId: reader.userId, createdAt: new Date((clock += 60_000)), rounds,
      flowerRunId: String(1_000_000_000 + index++), metricsOf: digitsRoundMetrics(rounds),
    }));
    await insertFinishedJobs(ferretdb.uri, DATABASE, seeded);
    return seeded.map(({ job }) => job._id.toHexString());
  };
  for (const other of others) await insertJobs(other, JOBS_PER_OTHER_PROJECT);
  const jobIds = await insertJobs(projectId, size);

  const ws = await connectWebSocket(pollen.wsUrl, reader.token);
  // A job from the middle of the history: its metrics are neither the first nor the last stored.
  const variables = { id: projectId, job: jobIds[Math.floor(jobIds.length / 2)] };
  return { size, pollen, reader, ws, variables, pids: { pollen: pollen.pid, ferretdb: ferretdb.pid } };
}

/** One request of a read to a store's Pollen, its answer checked. */
function request(read, { size, pollen, reader, ws, variables }, metricsPerJob) {
  if (read.subscription) {
    return async () => {
      let received = 0;
      await subscribe(ws, read.subscription, { job: variables.job }, () => (received += 1));
      if (received !== metricsPerJob) throw new Error(`${read.name}: ${received} metrics, expected ${metricsPerJob}`);
    };
  }
  return async () => {
    const data = await graphql(pollen.url, reader.token, read.query, variables);
    if (!read.check(data, { metricsPerJob, jobs: size })) throw new Error(`${read.name}: unexpected ${JSON.stringify(data).slice(0, 300)}`);
  };
}
