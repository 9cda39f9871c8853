// Launch overhead, for Pollen's LOCAL and SIMULATION federations: startTraining -> first metric at
// a graphql-ws subscriber (on the federation the job before left waiting, WARM_FEDERATION; the
// first job of each kind starts it, a SuperLink and SuperNodes or a SuperLink with --simulation,
// and is reported apart as "cold"), versus `flwr run` -> first aggregate on a federation of the same
// kind that is ALREADY running (the best case for a CLI user): LOCAL with every SuperNode online,
// SIMULATION a `flower-superlink --simulation` with the environment Pollen gives it. Both sides run
// the same Flower processes with the same settings (Pollen's flowerEnv, its faster-polling
// SuperNode, its flwr-simulation wrapper). The CLI side sees aggregates through Pollen's ServerApp
// shim and a loopback listener like Pollen's EventChannel. Pollen's side is broken down into the
// phases of its "launch phases" log line (src/runner/flower-run.ts, markLaunch).
//
//   node bench/launch-overhead.mjs [--trials=3] [--rounds=2]
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import {
  childPid, connectWebSocket, cpuSeconds, DIGITS_APP, FLOWER_BIN, freePort, loadAverage, median, onCleanup, option, prepareDigitsJob,
  printTable, progress, REPO, runBenchmark, sleep, startPollen, startTraining, stopChild, subscribe, tempDir, untilJobEnds, within,
} from './lib.mjs';

const CLIENTS = 2;
const TRIAL_TIMEOUT_MS = 5 * 60_000;
/** How long the CLI's federation rests between its warm-up run and the timed one. */
const WARM_UP_SETTLE_MS = 5_000;
const SHIM = path.join(REPO, 'src/runner/python/pollen_shim.py');
const GUARD = path.join(REPO, 'src/runner/python/process_guard.py');
/** Pollen's LOCAL SuperNode (Flower's, polling faster) and its flwr-simulation wrapper, as local-federation.ts uses them. */
const FEDERATION_BIN = path.join(REPO, 'src/runner/python/bin');
const SUPERNODE = path.join(FEDERATION_BIN, 'flower-supernode');
const SIMULATION_BIN = path.join(REPO, 'src/runner/python/simulation-bin');
const LOOPBACK_BIND = path.join(REPO, '.tools/lib/libpollen-loopback.so');
const PYTHON = path.join(FLOWER_BIN, 'python');
const run = promisify(execFile);
/** The environment of every Flower process and `flwr` command Pollen runs (from dist/, so `npm run build` first). */
const { flowerEnv } = await import(pathToFileURL(path.join(REPO, 'dist/runner/flower-env.js')).href);

/**
 * SIMULATION resources, set explicitly on Pollen (SIMULATION_* settings, these are its defaults)
 * so that the CLI baseline passes exactly the same --federation-config and Ray settings.
 */
const SIMULATION = {
  cpus: Math.max(1, Math.floor(availableParallelism() / 2)), clientCpus: 1, clientGpus: 0, objectStoreMb: 256,
};
const SIMULATION_RUN_ARGS = ['--federation-config', [`num_supernodes=${CLIENTS}`, `init_args_num_cpus=${SIMULATION.cpus}`,
  `client_resources_num_cpus=${SIMULATION.clientCpus}`, `client_resources_num_gpus=${SIMULATION.clientGpus}`].join(' ')];

/** The phases of Pollen's "launch phases" log line, in order, in ms since the runner claimed the job. */
const PHASES = ['appUnpacked', 'federationStarted', 'submitted', 'serverAppStarted', 'firstRoundStarted', 'firstTrainMetric'];

// fromRound 0 replays anything stored before the subscription started, so no first metric is missed.
const ROUND_METRICS = `subscription($jobId: ID!) { roundMetrics(jobId: $jobId, fromRound: 0) { round phase } }`;

/** Remembers, relative to `startedAt`, when the first metric of any phase and the first TRAIN one arrived. */
function firstArrivals(startedAt) {
  const firsts = { any: NaN, train: NaN };
  const note = (phase, receivedAt) => {
    if (Number.isNaN(firsts.any)) firsts.any = receivedAt - startedAt;
    if (phase === 'TRAIN' && Number.isNaN(firsts.train)) firsts.train = receivedAt - startedAt;
  };
  return { firsts, note };
}

// ------------------------------------------------------------------------------ Pollen side

/** Collects Pollen's "launch phases" log lines (LOG_LEVEL=info), by job id. */
function launchPhaseLog() {
  const byJob = new Map();
  const onLine = (line) => {
    if (!line.includes('"launch phases"')) return;
    try {
      const entry = JSON.parse(line);
      if (entry.msg === 'launch phases' && entry.jobId) byJob.set(entry.jobId, entry);
    } catch {
      // not a log line of Pollen's
    }
  };
  const of = async (jobId) => {
    for (let waited = 0; !byJob.has(jobId) && waited < 5_000; waited += 100) await sleep(100);
    const entry = byJob.get(jobId);
    if (!entry) throw new Error(`no "launch phases" log line for job ${jobId} (is LOG_LEVEL info?)`);
    return entry;
  };
  return { onLine, of };
}

async function timePollenLaunch(pollen, job, client, rounds, federation, launchLog) {
  // CPU that Pollen and its FerretDB spend from startTraining to the first TRAIN, while Flower starts on the same cores.
  const ferretdb = childPid(pollen.pid, /ferretdb/);
  const ownCpu = () => cpuSeconds(pollen.pid) + (ferretdb ? cpuSeconds(ferretdb) : 0);
  const cpuBefore = ownCpu();
  let cpuToTrain = NaN;
  const startedAt = Date.now();
  const jobId = await startTraining(pollen, job, { federation });
  const { firsts, note } = firstArrivals(startedAt);
  const metrics = subscribe(client, ROUND_METRICS, { jobId }, ({ roundMetrics }) => {
    if (roundMetrics.phase === 'TRAIN' && Number.isNaN(cpuToTrain)) cpuToTrain = ownCpu() - cpuBefore;
    note(roundMetrics.phase, Date.now());
  });
  // Waiting for the end keeps trials apart: Pollen runs one job at a time by default.
  await within(TRIAL_TIMEOUT_MS, Promise.all([untilJobEnds(client, jobId), metrics]), `Pollen ${federation} job ${jobId} (${rounds} rounds)`);
  const entry = await launchLog.of(jobId);
  if (entry.federation !== federation) throw new Error(`job ${jobId} ran on ${entry.federation}, not ${federation}`);
  // The line is written right after firstTrainMetric is marked: its time less that mark is the claim.
  const claimMs = Date.parse(entry.time) - entry.launchMs.firstTrainMetric - startedAt;
  return { ...firsts, phases: entry.launchMs, claimMs, cpuToTrain: cpuToTrain * 1000 };
}

// --------------------------------------------------------------------------------- CLI side

async function timeCliLaunch(rounds, federationKind) {
  let onShimEvent = () => undefined;
  const federationStartedAt = Date.now();
  const federation = await startFederation(federationKind, (event, receivedAt) => onShimEvent(event, receivedAt));
  const federationReadyMs = Date.now() - federationStartedAt;
  /** One `flwr run` to its end, with `onEvent` hearing the shim's events; resolves when `flwr run` returned. */
  const runOnce = async (onEvent) => {
    const ended = new Promise((resolve) => {
      onShimEvent = (event, receivedAt) => {
        onEvent(event, receivedAt);
        if (event.type === 'end') resolve(event);
      };
    });
    const answer = JSON.parse(await federation.flwr(['run', federation.appDir, 'local',
      '--run-config', `num-server-rounds=${rounds}`, ...federation.runArgs, '--format', 'json']));
    if (!answer.success) throw new Error(`flwr run failed: ${JSON.stringify(answer)}`);
    return { runId: answer['run-id'], ended };
  };
  try {
    // A run before the timed one, as Pollen's waiting federation has served the job before: neither side pays for a first run.
    const warmUp = await runOnce(() => undefined);
    await within(TRIAL_TIMEOUT_MS, warmUp.ended, `the warm-up flwr run ${warmUp.runId} to end`);
    // Its processes (a simulation's Ray) end after the ServerApp does: the timed run does not start among them.
    await sleep(WARM_UP_SETTLE_MS);

    const startedAt = Date.now();
    const { firsts, note } = firstArrivals(startedAt);
    const marks = { serverAppStarted: NaN, firstRoundStarted: NaN };
    const mark = (key, receivedAt) => {
      if (Number.isNaN(marks[key])) marks[key] = receivedAt - startedAt;
    };
    const timed = await runOnce((event, receivedAt) => {
      if (event.type === 'start') mark('serverAppStarted', receivedAt);
      if (event.type === 'round' && event.round >= 1) mark('firstRoundStarted', receivedAt);
      if (event.type === 'metric') note(event.phase, receivedAt);
    });
    const submittedMs = Date.now() - startedAt;
    const end = await within(TRIAL_TIMEOUT_MS, timed.ended, `flwr run ${timed.runId} to end`);
    if (end.status !== 'completed') throw new Error(`flwr run ${timed.runId} ended ${end.status}: ${end.error}`);
    return { ...firsts, ...marks, submittedMs, federationReadyMs };
  } finally {
    await federation.stop();
  }
}

/**
 * What Pollen's federations start (src/runner/federations/local-federation.ts): a SuperLink on
 * 127.0.0.1 and an app copy with the shim in front of its ServerApp; then, for LOCAL, CLIENTS
 * SuperNodes (resolves once every node is online), for SIMULATION nothing more (the SuperLink runs
 * with --simulation and the environment Pollen gives it; resolves once it is healthy).
 */
async function startFederation(kind, onShimEvent) {
  const dir = tempDir('pollen-bench-cli-');
  const flwrHome = path.join(dir, 'flwr-home');
  mkdirSync(flwrHome);
  const events = await listenForShimEvents(onShimEvent);
  const { appDir, target } = copyAppWithShim(path.join(dir, 'app'));
  const linkPort = await freePort();
  writeFileSync(path.join(flwrHome, 'config.toml'),
    `[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:${linkPort}"\ninsecure = true\n`);
  // Pollen's federation environment (local-federation.ts): its flower-superexec first on PATH (without POLLEN_SERVING_FILE
  // it polls as fast as a federation serving a run), and the shim's channel in pollen_shim.json inside the app.
  const flowerDefaults = flowerEnv(PYTHON, flwrHome);
  const env = { ...flowerDefaults, PATH: `${FEDERATION_BIN}${path.delimiter}${flowerDefaults.PATH}`, POLLEN_PYTHON: PYTHON };
  writeFileSync(path.join(appDir, 'pollen_shim.json'), JSON.stringify({ target, address: events.address, token: events.token }));
  const processes = [];
  const stop = async () => {
    await Promise.all(processes.map((child) => stopChild(child, 10_000)));
    await events.close();
  };
  onCleanup(stop);

  const simulation = kind === 'SIMULATION';
  const superlink = startGuarded(dir, 'superlink', [path.join(FLOWER_BIN, 'flower-superlink'), '--insecure', '--host', '127.0.0.1',
    '--port', String(linkPort), '--disable-runtime-dependency-installation',
    ...(simulation ? ['--simulation'] : [])],
  { ...env, ...(simulation ? simulationEnv(env) : {}) });
  processes.push(superlink);
  await waitForHealth(linkPort, superlink, dir);
  const flwr = async (args) => (await run(path.join(FLOWER_BIN, 'flwr'), args, { env, cwd: dir, timeout: 60_000 })).stdout;
  if (simulation) return { appDir, flwr, stop, runArgs: SIMULATION_RUN_ARGS };
  for (let partition = 0; partition < CLIENTS; partition += 1) {
    processes.push(startGuarded(dir, `supernode-${partition}`, [PYTHON, SUPERNODE, '--insecure',
      '--superlink', `127.0.0.1:${linkPort}`, '--host', '127.0.0.1', '--port', String(await freePort()),
      '--node-config', `partition-id=${partition} num-partitions=${CLIENTS}`], env));
  }
  await within(60_000, untilNodesOnline(flwr), `${CLIENTS} SuperNodes to be online`);
  return { appDir, flwr, stop, runArgs: [] };
}

/** The SuperLink environment of Pollen's SIMULATION federation (simulationEnv() in local-federation.ts), Ray's files in a short temporary directory. */
function simulationEnv(env) {
  return {
    PATH: `${SIMULATION_BIN}${path.delimiter}${env.PATH}`,
    POLLEN_RAY_TEMP_DIR: tempDir('pollen-bench-ray-'),
    POLLEN_RAY_OBJECT_STORE_BYTES: String(SIMULATION.objectStoreMb * 1024 * 1024),
    RAY_USAGE_STATS_ENABLED: '0',
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER: '0',
    LD_PRELOAD: LOOPBACK_BIND,
    RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO: '0',
  };
}

/**
 * Runs a Flower command under Pollen's process_guard.py, which stops every process it starts
 * (Flower puts some in sessions of their own), also when this script dies (its stdin closes).
 */
function startGuarded(dir, name, commandLine, env) {
  const log = openSync(path.join(dir, `${name}.log`), 'a');
  const child = spawn(PYTHON, [GUARD, ...commandLine],
    { env, cwd: dir, detached: true, stdio: ['pipe', log, log] });
  child.stdin.on('error', () => undefined);
  onCleanup(() => stopChild(child, 10_000));
  return child;
}

async function waitForHealth(port, superlink, dir) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (superlink.exitCode !== null) throw new Error(`the SuperLink exited:\n${readFileSync(path.join(dir, 'superlink.log'), 'utf8')}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return;
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  throw new Error('the SuperLink was not healthy within 60 s');
}

async function untilNodesOnline(flwr) {
  for (;;) {
    const { nodes = [] } = JSON.parse(await flwr(['supernode', 'list', '--format', 'json']));
    if (nodes.filter((node) => node.status === 'online').length >= CLIENTS) return;
    await sleep(500);
  }
}

/** Copies the digits app (no caches) and points its serverapp at the shim, as Pollen does. */
function copyAppWithShim(appDir) {
  cpSync(DIGITS_APP, appDir, { recursive: true, filter: (source) => !/^(__pycache__|\.venv)$|\.pyc$/.test(path.basename(source)) });
  cpSync(SHIM, path.join(appDir, 'pollen_shim.py'));
  const pyprojectPath = path.join(appDir, 'pyproject.toml');
  const pyproject = readFileSync(pyprojectPath, 'utf8');
  const target = parseToml(pyproject).tool.flwr.app.components.serverapp;
  // The same rewrite as pointServerAppAtShim in src/runner/flower-run.ts.
  const section = /^\[tool\.flwr\.app\.components\][ \t]*$[\s\S]*?(?=^\[|(?![\s\S]))/m.exec(pyproject);
  const body = section[0].replace(/^(\s*serverapp\s*=\s*)(["']).*?\2/m, '$1"pollen_shim:app"');
  writeFileSync(pyprojectPath, pyproject.slice(0, section.index) + body + pyproject.slice(section.index + section[0].length));
  return { appDir, target };
}

/**
 * Pollen's EventChannel in miniature: a loopback listener for the shim's NDJSON events, stamped
 * on arrival. The first line must carry the token; any other connection is dropped.
 */
async function listenForShimEvents(onEvent) {
  const token = randomBytes(24).toString('hex');
  const sockets = new Set();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let authenticated = false;
    createInterface({ input: socket, crlfDelay: Infinity }).on('line', (line) => {
      const receivedAt = Date.now();
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        return;
      }
      if (authenticated) onEvent(message, receivedAt);
      else if (message?.token === token) authenticated = true;
      else socket.destroy();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  let closed;
  const close = () => {
    closed ??= new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
    return closed;
  };
  return { address: `127.0.0.1:${server.address().port}`, token, close };
}

// -------------------------------------------------------------------------------------- main

const FEDERATIONS = ['LOCAL', 'SIMULATION'];
const s = (value) => (Number.isFinite(value) ? (value / 1000).toFixed(2) : '-');
const medianOf = (runs, pick) => median(runs.map(pick).filter(Number.isFinite));
const medianGap = (runs, pick, pickBefore) => medianOf(runs, (r) => pick(r) - pickBefore(r));

await runBenchmark(async () => {
  const trials = option('trials', 3);
  const rounds = option('rounds', 2);
  const loadBefore = loadAverage();

  // LOG_LEVEL info for the "launch phases" line; the SIMULATION_* settings are Pollen's defaults, made explicit; the
  // federations wait for the next job for the whole benchmark (a trial's other three runs take longer than the default 120 s).
  const launchLog = launchPhaseLog();
  const pollen = await startPollen({
    env: {
      LOG_LEVEL: 'info', WARM_FEDERATION: '30m', SIMULATION_CPUS: String(SIMULATION.cpus), SIMULATION_CLIENT_CPUS: String(SIMULATION.clientCpus),
      SIMULATION_CLIENT_GPUS: String(SIMULATION.clientGpus), SIMULATION_OBJECT_STORE_MB: String(SIMULATION.objectStoreMb),
    },
    onLine: launchLog.onLine,
  });
  const job = await prepareDigitsJob(pollen, { rounds, clients: CLIENTS });
  const client = await connectWebSocket(pollen.wsUrl, job.token);

  const runs = Object.fromEntries(FEDERATIONS.map((kind) => [kind, { pollen: [], cli: [] }]));
  // The first job of each kind starts the federation the others find waiting (as the CLI's is started before its clock).
  const cold = {};
  for (const kind of FEDERATIONS) {
    cold[kind] = await timePollenLaunch(pollen, job, client, rounds, kind, launchLog);
    progress(`${kind} pollen, first job (starts the federation): first TRAIN ${s(cold[kind].train)} s, ` +
      PHASES.map((name) => `${name} ${s(cold[kind].phases[name])}`).join(', '));
  }
  // Which side goes first alternates from trial to trial, so that neither always follows the other.
  for (let trial = 1; trial <= trials; trial += 1) {
    for (const kind of FEDERATIONS) {
      const sides = [
        async () => {
          const r = await timePollenLaunch(pollen, job, client, rounds, kind, launchLog);
          runs[kind].pollen.push(r);
          progress(`trial ${trial} ${kind} pollen: first TRAIN ${s(r.train)} s, claim ${s(r.claimMs)} s, ` +
            PHASES.map((name) => `${name} ${s(r.phases[name])}`).join(', '));
        },
        async () => {
          const r = await timeCliLaunch(rounds, kind);
          runs[kind].cli.push(r);
          progress(`trial ${trial} ${kind} cli: federation ${s(r.federationReadyMs)} s, submitted ${s(r.submittedMs)}, ` +
            `serverAppStarted ${s(r.serverAppStarted)}, firstRoundStarted ${s(r.firstRoundStarted)}, first TRAIN ${s(r.train)}`);
        },
      ];
      for (const side of trial % 2 ? sides : sides.reverse()) await side();
    }
    progress(`trial ${trial}/${trials} done (load average ${loadAverage()})`);
  }

  // What the federations waiting between jobs cost meanwhile: both kinds are waiting now.
  const idleSeconds = 10;
  const waitingPids = processesRunningIn(path.join(realpathSync(pollen.dataDir), 'local-federations'));
  const idleCpuBefore = waitingPids.map((pid) => cpuSeconds(pid));
  await sleep(idleSeconds * 1000);
  const idleCpu = waitingPids.reduce((sum, pid, index) => sum + (cpuSeconds(pid) - idleCpuBefore[index]), 0);

  console.log(`\nlaunch overhead: digits app, ${rounds} rounds, ${CLIENTS} clients, ${trials} trials per side and federation ` +
    '(LOCAL then SIMULATION in each trial; Pollen first in odd trials, the CLI first in even ones)');
  console.log('Pollen: startTraining -> first metric at a subscriber (on the federation the job before left waiting)');
  console.log('CLI:    flwr run -> first aggregate at the shim listener (federation already up: LOCAL nodes online, SIMULATION SuperLink ' +
    'healthy; one untimed run on it before)');
  console.log(`SIMULATION on both sides: ${SIMULATION_RUN_ARGS[1]}, Ray object store ${SIMULATION.objectStoreMb} MiB`);
  const summary = [];
  for (const kind of FEDERATIONS) {
    const { pollen: pollenRuns, cli: cliRuns } = runs[kind];
    console.log(`\n${kind}: every trial, seconds`);
    printTable(['seconds', 'first metric', 'first TRAIN', 'flwr run returned', 'federation ready', 'Pollen+FerretDB CPU to first TRAIN'], [
      ...pollenRuns.map((r, i) => [`pollen #${i + 1}`, s(r.any), s(r.train), '-', '-', s(r.cpuToTrain)]),
      ...cliRuns.map((r, i) => [`cli #${i + 1}`, s(r.any), s(r.train), s(r.submittedMs), s(r.federationReadyMs), '-']),
      ['pollen median', s(medianOf(pollenRuns, (r) => r.any)), s(medianOf(pollenRuns, (r) => r.train)), '-', '-',
        s(medianOf(pollenRuns, (r) => r.cpuToTrain))],
      ['cli median', s(medianOf(cliRuns, (r) => r.any)), s(medianOf(cliRuns, (r) => r.train)), s(medianOf(cliRuns, (r) => r.submittedMs)),
        s(medianOf(cliRuns, (r) => r.federationReadyMs)), '-'],
    ]);

    // Pollen's phases are ms since the claim; the CLI's since `flwr run` started, its federation before that.
    const phase = (name) => (r) => (name === 'claim' ? 0 : r.phases[name]);
    const cliAt = { submitted: (r) => r.submittedMs, serverAppStarted: (r) => r.serverAppStarted,
      firstRoundStarted: (r) => r.firstRoundStarted, firstTrainMetric: (r) => r.train };
    const cliOrder = ['submitted', 'serverAppStarted', 'firstRoundStarted', 'firstTrainMetric'];
    const rows = [
      ['startTraining -> claim', s(medianOf(pollenRuns, (r) => r.claimMs)), '-', '-', '-'],
      ['federation start (CLI: before its clock)', '-', '-', '-', s(medianOf(cliRuns, (r) => r.federationReadyMs))],
    ];
    PHASES.forEach((name, index) => {
      const before = index === 0 ? 'claim' : PHASES[index - 1];
      const cliIndex = cliOrder.indexOf(name);
      rows.push([name, s(medianOf(pollenRuns, phase(name))), s(medianGap(pollenRuns, phase(name), phase(before))),
        cliIndex < 0 ? '-' : s(medianOf(cliRuns, cliAt[name])),
        cliIndex < 0 ? '-' : s(cliIndex === 0 ? medianOf(cliRuns, cliAt[name]) : medianGap(cliRuns, cliAt[name], cliAt[cliOrder[cliIndex - 1]]))]);
    });
    rows.push(['first TRAIN at subscriber / listener', s(medianOf(pollenRuns, (r) => r.train)), '-', s(medianOf(cliRuns, (r) => r.train)), '-']);
    console.log(`\n${kind}: Pollen's launch phases (median over trials; Pollen since the runner claimed the job, CLI since flwr run; ` +
      'gap = median of each trial\'s time since the phase above)');
    printTable(['phase', 'Pollen at', 'Pollen gap', 'CLI at', 'CLI gap'], rows);

    const pollenTrain = medianOf(pollenRuns, (r) => r.train);
    const cliTrain = medianOf(cliRuns, (r) => r.train);
    const cliCold = medianOf(cliRuns, (r) => r.federationReadyMs + r.train);
    const federationGap = medianGap(pollenRuns, phase('federationStarted'), phase('appUnpacked'));
    summary.push([kind, s(pollenTrain), s(cliTrain), `${(pollenTrain / cliTrain).toFixed(2)}x`, s(pollenTrain - cliTrain),
      s(federationGap), s(cold[kind].train), s(cliCold), `${(cold[kind].train / cliCold).toFixed(2)}x`]);
  }

  console.log('\nfirst TRAIN, medians: Pollen (startTraining -> subscriber, federation waiting) against the CLI on a running federation; ' +
    'Pollen\'s first job of the kind (starting its federation) against the CLI counting its federation start');
  printTable(['federation', 'Pollen s', 'CLI s', 'Pollen/CLI', 'Pollen - CLI s', 'Pollen federation acquired s',
    'Pollen first job s', 'CLI incl. federation start s', 'first job/that'], summary);
  console.log(`waiting between jobs: the LOCAL and SIMULATION federations, ${waitingPids.length} processes, used ` +
    `${((idleCpu / idleSeconds) * 100).toFixed(1)}% of a core over ${idleSeconds} s`);
  console.log(`load average before: ${loadBefore}; after: ${loadAverage()}`);
});

/** The processes whose working directory is under `dir`. */
function processesRunningIn(dir) {
  return readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).flatMap((entry) => {
    try {
      return readlinkSync(`/proc/${entry}/cwd`).startsWith(`${dir}/`) ? [Number(entry)] : [];
    } catch {
      return []; // gone, or not ours to read
    }
  });
}
