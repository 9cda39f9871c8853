// Launch overhead: startTraining -> first metric at a graphql-ws subscriber (Pollen starts a fresh
// SuperLink and SuperNodes per job), versus `flwr run` -> first aggregate on a local federation
// that is ALREADY running with every SuperNode online (the best case for a CLI user). The CLI side
// sees aggregates through Pollen's ServerApp shim and a loopback listener like Pollen's EventChannel.
//
//   node bench/launch-overhead.mjs [--trials=3] [--rounds=2]
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import {
  connectWebSocket, DIGITS_APP, FLOWER_BIN, freePort, loadAverage, median, onCleanup, option, prepareDigitsJob,
  printTable, REPO, runBenchmark, sleep, startPollen, startTraining, stopChild, subscribe, tempDir, untilJobEnds, within,
} from './lib.mjs';

const CLIENTS = 2;
const TRIAL_TIMEOUT_MS = 5 * 60_000;
const SHIM = path.join(REPO, 'src/runner/python/pollen_shim.py');
const GUARD = path.join(REPO, 'src/runner/python/process_guard.py');
const PYTHON = path.join(FLOWER_BIN, 'python');
const run = promisify(execFile);

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

async function timePollenLaunch(pollen, job, client, rounds) {
  const startedAt = Date.now();
  const jobId = await startTraining(pollen, job);
  const { firsts, note } = firstArrivals(startedAt);
  const metrics = subscribe(client, ROUND_METRICS, { jobId }, ({ roundMetrics }) => note(roundMetrics.phase, Date.now()));
  // Waiting for the end keeps trials apart: Pollen runs one job at a time by default.
  await within(TRIAL_TIMEOUT_MS, Promise.all([untilJobEnds(client, jobId), metrics]), `Pollen job ${jobId} (${rounds} rounds)`);
  return firsts;
}

// --------------------------------------------------------------------------------- CLI side

async function timeCliLaunch(rounds) {
  let onShimEvent = () => undefined;
  const federationStartedAt = Date.now();
  const federation = await startLocalFederation((event, receivedAt) => onShimEvent(event, receivedAt));
  const federationReadyMs = Date.now() - federationStartedAt;
  try {
    const startedAt = Date.now();
    const { firsts, note } = firstArrivals(startedAt);
    const ended = new Promise((resolve) => {
      onShimEvent = (event, receivedAt) => {
        if (event.type === 'metric') note(event.phase, receivedAt);
        if (event.type === 'end') resolve(event);
      };
    });
    const answer = JSON.parse(await federation.flwr(['run', federation.appDir, 'local',
      '--run-config', `num-server-rounds=${rounds}`, '--format', 'json']));
    const submittedMs = Date.now() - startedAt;
    if (!answer.success) throw new Error(`flwr run failed: ${JSON.stringify(answer)}`);
    const end = await within(TRIAL_TIMEOUT_MS, ended, `flwr run ${answer['run-id']} to end`);
    if (end.status !== 'completed') throw new Error(`flwr run ${answer['run-id']} ended ${end.status}: ${end.error}`);
    return { ...firsts, submittedMs, federationReadyMs };
  } finally {
    await federation.stop();
  }
}

/**
 * What Pollen's LOCAL federation starts (src/runner/federations/local-federation.ts): a SuperLink and CLIENTS SuperNodes on
 * 127.0.0.1, an app copy with the shim in front of its ServerApp; resolves once every node is online.
 */
async function startLocalFederation(onShimEvent) {
  const dir = tempDir('pollen-bench-cli-');
  const flwrHome = path.join(dir, 'flwr-home');
  mkdirSync(flwrHome);
  const events = await listenForShimEvents(onShimEvent);
  const { appDir, target } = copyAppWithShim(path.join(dir, 'app'));
  const linkPort = await freePort();
  writeFileSync(path.join(flwrHome, 'config.toml'),
    `[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:${linkPort}"\ninsecure = true\n`);
  const env = {
    ...process.env,
    FLWR_TELEMETRY_ENABLED: '0',
    FLWR_DISABLE_UPDATE_CHECK: '1',
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION: '1',
    FLWR_HOME: flwrHome,
    PATH: `${FLOWER_BIN}${path.delimiter}${process.env.PATH ?? ''}`, // Flower starts flower-superexec, flwr-*app by name
    PYTHONUNBUFFERED: '1',
  };
  const processes = [];
  const stop = async () => {
    await Promise.all(processes.map((child) => stopChild(child, 10_000)));
    await events.close();
  };
  onCleanup(stop);

  // Only the SuperLink's tree (SuperExec -> flwr-serverapp) needs the shim's settings.
  const superlink = startGuarded(dir, 'superlink', 'flower-superlink', ['--insecure', '--host', '127.0.0.1',
    '--port', String(linkPort), '--database', path.join(dir, 'state.db'), '--disable-runtime-dependency-installation'],
  { ...env, POLLEN_SHIM_TARGET: target, POLLEN_EVENTS_ADDRESS: events.address, POLLEN_EVENTS_TOKEN: events.token });
  processes.push(superlink);
  await waitForHealth(linkPort, superlink, dir);
  for (let partition = 0; partition < CLIENTS; partition += 1) {
    processes.push(startGuarded(dir, `supernode-${partition}`, 'flower-supernode', ['--insecure',
      '--superlink', `127.0.0.1:${linkPort}`, '--host', '127.0.0.1', '--port', String(await freePort()),
      '--node-config', `partition-id=${partition} num-partitions=${CLIENTS}`], env));
  }
  const flwr = async (args) => (await run(path.join(FLOWER_BIN, 'flwr'), args, { env, cwd: dir, timeout: 60_000 })).stdout;
  await within(60_000, untilNodesOnline(flwr), `${CLIENTS} SuperNodes to be online`);
  return { appDir, flwr, stop };
}

/**
 * Runs a Flower command under Pollen's process_guard.py, which stops every process it starts
 * (Flower puts some in sessions of their own), also when this script dies (its stdin closes).
 */
function startGuarded(dir, name, command, args, env) {
  const log = openSync(path.join(dir, `${name}.log`), 'a');
  const child = spawn(PYTHON, [GUARD, path.join(FLOWER_BIN, command), ...args],
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

await runBenchmark(async () => {
  const trials = option('trials', 3);
  const rounds = option('rounds', 2);
  const loadBefore = loadAverage();

  const pollen = await startPollen();
  const job = await prepareDigitsJob(pollen, { rounds, clients: CLIENTS });
  const client = await connectWebSocket(pollen.wsUrl, job.token);

  const pollenRuns = [];
  const cliRuns = [];
  for (let trial = 1; trial <= trials; trial += 1) {
    pollenRuns.push(await timePollenLaunch(pollen, job, client, rounds));
    cliRuns.push(await timeCliLaunch(rounds));
    console.error(`trial ${trial}/${trials} done`);
  }

  const s = (value) => (Number.isFinite(value) ? (value / 1000).toFixed(2) : '-');
  const medianOf = (runs, key) => median(runs.map((r) => r[key]));
  console.log(`\nlaunch overhead: digits app, ${rounds} rounds, ${CLIENTS} clients, ${trials} trials per side (alternating)`);
  console.log('Pollen: startTraining -> first metric at a subscriber (fresh federation per job)');
  console.log('CLI:    flwr run -> first aggregate at the shim listener (federation already up, nodes online)');
  printTable(['seconds', 'first metric', 'first TRAIN', 'flwr run returned', 'federation ready'], [
    ...pollenRuns.map((r, i) => [`pollen #${i + 1}`, s(r.any), s(r.train), '-', '-']),
    ...cliRuns.map((r, i) => [`cli #${i + 1}`, s(r.any), s(r.train), s(r.submittedMs), s(r.federationReadyMs)]),
    ['pollen median', s(medianOf(pollenRuns, 'any')), s(medianOf(pollenRuns, 'train')), '-', '-'],
    ['cli median', s(medianOf(cliRuns, 'any')), s(medianOf(cliRuns, 'train')), s(medianOf(cliRuns, 'submittedMs')),
      s(medianOf(cliRuns, 'federationReadyMs'))],
  ]);
  const ratio = (key) => (medianOf(pollenRuns, key) / medianOf(cliRuns, key)).toFixed(2);
  console.log(`ratio Pollen/CLI (medians): first metric ${ratio('any')}x, first TRAIN ${ratio('train')}x`);
  console.log(`load average before: ${loadBefore}; after: ${loadAverage()}`);
});
