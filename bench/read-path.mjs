// Read path: a realistic nested query (a page of projects with their owner, members, latest
// training jobs and those jobs' latest metrics) under concurrent load (autocannon), against a
// trivial query on the same Pollen with the same load settings; and the MongoDB commands a
// request costs, counted by a proxy between Pollen and its FerretDB. With --breakdown, also the
// page of the first page size grown a part at a time, each part under the same load: where
// Pollen's and FerretDB's CPU per request goes.
//
//   node bench/read-path.mjs [--page-sizes=5,50] [--connections=4] [--duration=10] [--min-answers=8]
//     [--projects=50] [--jobs=4] [--rounds=5] [--breakdown]
import autocannon from 'autocannon';
import {
  addProjectMember, cpuSeconds, createProject, createTrainingConfig, digitsRoundMetrics, DIGITS_APP, finishedJob, graphql, insertFinishedJobs, listOption, loadAverage,
  ms, option, printTable, progress, ratio, registerUser, runBenchmark, startCommandCounter, startFerretDB, startPollen, untilQuiet,
  uploadApp, zipDirectory,
} from './lib.mjs';

const TARGET_RATIO = 0.5;
const DATABASE = 'pollen';
const JOBS_SHOWN = 3;
const MEMBER_ROLES = ['VIEWER', 'EDITOR', 'OWNER']; // added to each project besides its creator

const PROJECT_FIELDS = 'id name description createdAt myRole';
const PEOPLE = 'owner { id username } members { role user { id username } }';
const JOB_FIELDS = 'id status statusReason currentRound totalRounds createdAt finishedAt';
const LATEST_METRICS = 'latestMetrics { round phase values recordedAt }';

/** A page of projects with `projectFields`, and their newest jobs with `jobFields` when given. */
function projectsPage(projectFields, jobFields) {
  const jobs = jobFields ? `trainingJobs(first: ${JOBS_SHOWN}) { totalCount edges { node { ${jobFields} } } }` : '';
  return `query ProjectsPage($first: Int!) {
  projects(first: $first) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { ${projectFields} ${jobs} } }
  }
}`;
}

const NESTED = projectsPage(`${PROJECT_FIELDS} ${PEOPLE}`, `${JOB_FIELDS} ${LATEST_METRICS}`);
/** The nested query built up a part at a time, for --breakdown; the last part is NESTED itself. */
const PARTS = [
  ['projects: id only (+ totalCount, pageInfo)', projectsPage('id')],
  ['+ their own fields', projectsPage(PROJECT_FIELDS)],
  ['+ owner and members', projectsPage(`${PROJECT_FIELDS} ${PEOPLE}`)],
  [`+ ${JOBS_SHOWN} jobs each: id (+ totalCount)`, projectsPage(`${PROJECT_FIELDS} ${PEOPLE}`, 'id')],
  ['+ the jobs\' fields', projectsPage(`${PROJECT_FIELDS} ${PEOPLE}`, JOB_FIELDS)],
  ['+ latestMetrics (the nested query)', NESTED],
];
const BASELINE = '{ me { id } }';
const SIGNED_IN_NOTHING = '{ __typename }'; // a signed-in request that reads nothing but its session

await runBenchmark(async () => {
  const pageSizes = listOption('page-sizes', [5, 50]);
  const connections = option('connections', 4);
  const duration = option('duration', 10);
  const minAnswers = option('min-answers', 2 * connections);
  const projectCount = Math.max(option('projects', 50), ...pageSizes);
  const jobsPerProject = Math.max(option('jobs', 4), JOBS_SHOWN);
  const rounds = option('rounds', 5);
  const breakdown = process.argv.includes('--breakdown');
  const loadBefore = loadAverage();

  // Pollen reaches its FerretDB through the counting proxy (one loopback hop per command, for the
  // baseline and the nested query alike). No runner (MAX_CONCURRENT_JOBS=0) and a long JOB_LEASE:
  // no background commands to count.
  const ferretdb = await startFerretDB();
  const counter = await startCommandCounter(ferretdb.uri);
  const pollen = await startPollen({ env: { MONGODB_URI: `${counter.uri}${DATABASE}`, MAX_CONCURRENT_JOBS: '0', JOB_LEASE: '24h' } });
  const processes = { pollen: pollen.pid, ferretdb: ferretdb.pid };
  // autocannon stops at its deadline without waiting for answers; Pollen still finishes them.
  const drain = async () => {
    for (const pid of Object.values(processes)) await untilQuiet(pid, { busyShare: 0.1, timeoutMs: 60 * 60_000 });
  };

  progress('seeding');
  const { token } = await seed(pollen, ferretdb.uri, { projectCount, jobsPerProject, rounds });

  // One request alone per page size: its exact commands by name (and a check of the answer).
  const single = new Map();
  for (const first of pageSizes) {
    progress(`one request alone, page of ${first}`);
    await drain();
    counter.take();
    const run = await measured(processes, async () => {
      const started = performance.now();
      checkPage(await graphql(pollen.url, token, NESTED, { first }), first, rounds);
      return performance.now() - started;
    });
    single.set(first, { ...run, commands: counter.take() });
  }

  // Under load: the commands counted from the start of a run until every request sent has been
  // answered, divided by the requests sent. A run lasts `duration` seconds, unless one request
  // alone already took so long that few would be answered in that time: then it sends a fixed
  // `min-answers` requests (still `connections` at a time) and lasts until they are answered.
  const load = async (query, variables, stop) => {
    await drain();
    counter.take();
    const run = await measured(processes, () => loadTest(pollen, token, { query, variables }, { connections, ...stop }));
    await drain();
    return { ...run, stop, commandsPerRequest: counter.take().length / run.result.requests.sent };
  };
  progress('baseline under load');
  await load(BASELINE, {}, { duration: 2 }); // warm-up: JIT, connection pool
  const baseline = await load(BASELINE, {}, { duration });
  const nested = new Map();
  for (const first of pageSizes) {
    const slow = single.get(first).result * connections > (duration * 1000) / 2;
    progress(`nested under load, page of ${first}${slow ? `: ${minAnswers} requests` : ''}`);
    nested.set(first, await load(NESTED, { first }, slow ? { amount: minAnswers } : { duration }));
  }

  console.log(`\nread path: ${projectCount} projects (creator + ${MEMBER_ROLES.length} members each), ${jobsPerProject} jobs each ` +
    `(${JOBS_SHOWN} shown) with ${1 + 3 * rounds} metrics each; autocannon, ${connections} connections`);
  const rate = ({ result }) => result.requests.total / result.duration;
  const row = (label, run) => {
    const { result, cpu, stop } = run;
    const answered = result.requests.total;
    const perRequest = (seconds) => (answered > 0 ? ms((seconds / answered) * 1000) : '-');
    return [
      label, stop.amount ? `${stop.amount} requests, ${result.duration.toFixed(0)} s` : `${stop.duration} s`,
      rate(run).toFixed(rate(run) < 10 ? 2 : 1), answered > 0 ? ms(result.latency.p50) : '-', answered > 0 ? ms(result.latency.p99) : '-',
      `${answered}/${result.requests.sent}`, failures(result), run.commandsPerRequest.toFixed(1),
      perRequest(cpu.pollen), perRequest(cpu.ferretdb), ratio(rate(run), rate(baseline)),
    ];
  };
  printTable(['query', 'run', 'req/s', 'p50 ms', 'p99 ms', 'answered/sent', 'failed', 'commands/req', 'Pollen CPU ms/req',
    'FerretDB CPU ms/req', 'vs baseline'], [
    row(`baseline ${BASELINE}`, baseline),
    ...pageSizes.map((first) => row(`nested, page of ${first}`, nested.get(first))),
  ]);
  console.log('(CPU per request: CPU used from the start of a run until all its requests were answered, ' +
    'over the requests answered in the run)');

  console.log('\nOne request alone: MongoDB commands (upkeep such as hello/ping left out), time and CPU');
  printTable(['page size', 'commands', 'by command', 'ms', 'Pollen CPU ms', 'FerretDB CPU ms'], pageSizes.map((first) => {
    const { commands, result: wall, cpu } = single.get(first);
    const byName = new Map([...new Set(commands)].sort().map((name) => [name, commands.filter((one) => one === name).length]));
    return [first, commands.length, [...byName].map(([name, n]) => `${name} ${n}`).join(', '), ms(wall),
      ms(cpu.pollen * 1000), ms(cpu.ferretdb * 1000)];
  }));

  const totals = pageSizes.map((first) => single.get(first).commands.length);
  const flat = totals.every((total) => total === totals[0]);
  console.log(`\ntarget nested/baseline req/s >= ${TARGET_RATIO}: ` + pageSizes.map((first) => {
    const value = rate(nested.get(first)) / rate(baseline);
    return `page ${first} ${value.toFixed(3)} ${value >= TARGET_RATIO ? 'met' : 'MISSED'}`;
  }).join('; '));
  console.log(`target commands per request independent of page size: ${flat ? 'met' : 'MISSED'} (${totals.join(' vs ')})`);
  if (breakdown) {
    const first = pageSizes[0];
    const parts = [['signed in, reads nothing: ' + SIGNED_IN_NOTHING, SIGNED_IN_NOTHING, {}], ...PARTS.map(([label, query]) => [label, query, { first }])];
    const runs = [];
    for (const [label, query, variables] of parts) {
      progress(`breakdown, page of ${first}: ${label}`);
      runs.push([label, await load(query, variables, { duration })]);
    }
    console.log(`\nWhere the page of ${first} goes: the query grown a part at a time, each under the same load as above`);
    const cpuPerRequest = ({ result, cpu }) => (cpu.pollen / Math.max(result.requests.total, 1)) * 1000;
    let before = cpuPerRequest(runs[0][1]);
    printTable(['query', 'req/s', 'commands/req', 'Pollen CPU ms/req', 'added by the part', 'FerretDB CPU ms/req'], runs.map(([label, run], i) => {
      const { result, cpu } = run;
      const added = i === 0 ? '-' : ms(cpuPerRequest(run) - before);
      before = cpuPerRequest(run);
      return [label, rate(run).toFixed(1), run.commandsPerRequest.toFixed(1), ms(cpuPerRequest(run)), added,
        ms((cpu.ferretdb / Math.max(result.requests.total, 1)) * 1000)];
    }));
  }
  console.log(`load average before: ${loadBefore}; after: ${loadAverage()}`);
});

function failures(result) {
  return result.errors + result.non2xx + result.mismatches;
}

/** autocannon against POST /graphql; a body with "errors" counts as a mismatch. */
async function loadTest(pollen, token, body, settings) {
  const result = await autocannon({
    ...settings, // connections, and duration or amount
    url: pollen.url,
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    verifyBody: (text) => !text.includes('"errors"'),
    timeout: 600, // a slow answer is a figure, not an error
  });
  return result;
}

/** Runs `run` and notes the CPU seconds each process used meanwhile. */
async function measured(pids, run) {
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid)]));
  const result = await run();
  const cpu = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid) - before[name]]));
  return { result, cpu };
}

/**
 * Users and projects through the API: the viewer creates every project and adds three other
 * users (VIEWER, EDITOR, OWNER), uploads the digits app and saves a config. Finished jobs and
 * their metrics go straight into the database (finishedJob() in lib.mjs).
 */
async function seed(pollen, ferretdbUri, { projectCount, jobsPerProject, rounds }) {
  const stamp = Date.now();
  const viewer = await registerUser(pollen, `reader${stamp}`);
  const others = [];
  for (let i = 0; i < 6; i++) others.push(await registerUser(pollen, `member${stamp}x${i}`));
  const archive = await zipDirectory(DIGITS_APP);
  const projects = [];
  for (let i = 0; i < projectCount; i++) {
    const projectId = await createProject(pollen, viewer.token, `Project ${i} ${stamp}`);
    for (const [j, role] of MEMBER_ROLES.entries()) {
      await addProjectMember(pollen, viewer.token, projectId, others[(i + j) % others.length].username, role);
    }
    const appId = await uploadApp(pollen, viewer.token, projectId, archive, 'digits-app.zip');
    const configId = await createTrainingConfig(pollen, viewer.token, projectId, { rounds, clients: 2 });
    projects.push({ projectId, appId, configId });
  }

  const seeded = [];
  let clock = Date.now() - projectCount * jobsPerProject * 60_000;
  for (const { projectId, appId, configId } of projects) {
    for (let j = 0; j < jobsPerProject; j++) {
      const failed = j % 4 === 3;
      seeded.push(finishedJob({
        projectId, appId, configId, userId: viewer.userId, createdAt: new Date((clock += 60_000)), rounds,
        lastRound: failed ? Math.ceil(rounds / 2) : rounds, failed, flowerRunId: String(1_000_000_000 + seeded.length),
        metricsOf: digitsRoundMetrics(rounds),
      }));
    }
  }
  await insertFinishedJobs(ferretdbUri, DATABASE, seeded);
  return { token: viewer.token };
}

/** The answer must hold the whole page with every relation filled in. */
function checkPage(data, first, rounds) {
  const edges = data.projects.edges;
  const ok = edges.length === first && edges.every(({ node }) => node.owner.username && node.members.length === 1 + MEMBER_ROLES.length &&
    node.members.every((member) => member.user.username) && node.trainingJobs.edges.length === JOBS_SHOWN &&
    node.trainingJobs.edges.every(({ node: job }) => job.latestMetrics.length === 3 && job.currentRound <= rounds));
  if (!ok) throw new Error(`unexpected page of ${first}: ${JSON.stringify(data).slice(0, 500)}`);
}
