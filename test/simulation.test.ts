import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CancelTrainingDocument, CreateProjectDocument, CreateTrainingConfigDocument, JobResultsDocument, RoundMetricsDocument, StartTrainingDocument,
  TrainingJobDocument, TrainingJobUpdatedDocument,
} from './generated/graphql.js';
import {
  connectWebSocket, errorCode, localFederationsDir, PollenProcess, processesIn, queueJob, REPO_ROOT, signUp, uploadAppDir,
} from './support/testkit.js';

// SIMULATION runs the app on Flower's Simulation Engine: `clients` virtual SuperNodes as Ray
// actors in the process tree of a SuperLink Pollen runs on this host, with everything else a job has.
const DIGITS = path.join(REPO_ROOT, 'examples/digits-app');
const started: PollenProcess[] = [];
afterAll(async () => {
  for (const pollen of started) {
    await pollen.stop();
    pollen.removeDataDir();
  }
});

async function pollenWithProject(env: Record<string, string> = {}, reuse?: PollenProcess) {
  const pollen = await PollenProcess.start({ env, ...(reuse ? { database: reuse.database, dataDir: reuse.dataDir } : {}) });
  if (!reuse) started.push(pollen);
  const { session, client } = await signUp(pollen);
  const { createProject } = await client.data(CreateProjectDocument, { input: { name: `simulation ${Date.now()}` } });
  return { pollen, session, client, projectId: createProject.id };
}

/** The short links to Ray's directories of this Pollen's federations (Ray's unix sockets live under them). */
function rayLinks(pollen: PollenProcess): string[] {
  return readdirSync(tmpdir()).filter((name) => name.startsWith('pollen-ray-'))
    .map((name) => path.join(tmpdir(), name))
    .filter((link) => readlinkOrNothing(link).startsWith(localFederationsDir(pollen.dataDir)));
}

function readlinkOrNothing(link: string): string {
  try {
    return readlinkSync(link);
  } catch {
    return '';
  }
}

/** Everything of this Pollen's simulations still alive: its federations' Flower processes (in their directories) and Ray's (naming the short links). */
function simulationProcesses(pollen: PollenProcess) {
  const seen = new Map<number, string>();
  for (const dir of [localFederationsDir(pollen.dataDir), ...rayLinks(pollen)]) {
    for (const { pid, args } of processesIn(dir)) seen.set(pid, args);
  }
  return [...seen].map(([pid, args]) => ({ pid, args }));
}
const RAY = /raylet|gcs_server|ray::|flwr-simulation|default_worker/;

/** The addresses the given processes listen on (TCP and UDP), from `ss`. */
function listeningAddresses(pids: ReadonlySet<number>): string[] {
  return execFileSync('ss', ['-ltunpH'], { encoding: 'utf8' }).split('\n').flatMap((line) => {
    const pid = /pid=(\d+)/.exec(line)?.[1];
    return pid && pids.has(Number(pid)) ? [line.trim().split(/\s+/)[4]!] : [];
  });
}
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|\[::1\]|\[::ffff:127\.\d+\.\d+\.\d+\]):\d+$/;

describe('a SIMULATION run', () => {
  it('trains 50 virtual clients to COMPLETED with live metrics and kept models, Ray on loopback and under DATA_DIR, and leaves nothing behind', async () => {
    const { pollen, session, client, projectId } = await pollenWithProject({ WARM_FEDERATION: '15s' });
    const jobId = await queueJob(client, projectId, DIGITS, 4, undefined, { clients: 50, federation: 'SIMULATION' });
    const socket = connectWebSocket(pollen.wsUrl, session.accessToken);
    const metrics = socket.subscribe(RoundMetricsDocument, { jobId });
    const updates = socket.subscribe(TrainingJobUpdatedDocument, { jobId });

    // While it trains: Ray's processes listen on loopback only, and its session lives in the federation's directory.
    await expect.poll(() => metrics.items.some(({ roundMetrics }) => roundMetrics.round >= 1), { timeout: 240_000, interval: 100 }).toBe(true);
    const alive = simulationProcesses(pollen);
    expect(alive.some(({ args }) => /raylet|gcs_server/.test(args)), alive.map(({ args }) => args).join('\n')).toBe(true);
    const addresses = listeningAddresses(new Set(alive.map(({ pid }) => pid)));
    expect(addresses.length).toBeGreaterThan(0);
    expect(addresses.filter((address) => !LOOPBACK.test(address))).toEqual([]);
    const [federationDir] = readdirSync(localFederationsDir(pollen.dataDir));
    expect(readdirSync(path.join(localFederationsDir(pollen.dataDir), federationDir!, 'ray')).some((name) => name.startsWith('session_'))).toBe(true);

    await updates.ended;
    // Its SuperLink waits for the next run for WARM_FEDERATION (the job is reported COMPLETED once it does).
    const waitingSuperLink = simulationProcesses(pollen).some(({ args }) => args.includes('/flower-superlink '));
    await metrics.ended;
    await socket.client.dispose();
    expect(updates.items.at(-1)!.trainingJobUpdated).toMatchObject({ status: 'COMPLETED', federation: 'SIMULATION', clients: 50, currentRound: 4 });
    expect(waitingSuperLink).toBe(true);
    // A point per round and phase, live, in order; the model learns.
    const received = metrics.items.map(({ roundMetrics }) => `${roundMetrics.round} ${roundMetrics.phase}`);
    expect(received).toEqual(['0 SERVER_EVALUATE', ...[1, 2, 3, 4].flatMap((round) => ['TRAIN', 'EVALUATE', 'SERVER_EVALUATE'].map((phase) => `${round} ${phase}`))]);
    const accuracy = metrics.items.filter(({ roundMetrics }) => roundMetrics.phase === 'SERVER_EVALUATE').map(({ roundMetrics }) => roundMetrics.values.test_acc as number);
    expect(accuracy.at(-1)!).toBeGreaterThan(accuracy[0]! + 0.3);
    const { trainingJob } = await client.data(JobResultsDocument, { id: jobId });
    expect(trainingJob!.finalCheckpoint).toMatchObject({ round: 4 });
    expect(trainingJob!.checkpoints.map((checkpoint) => checkpoint.round)).toEqual([2, 3, 4]);

    // Ray ends with the run; the SuperLink stops after WARM_FEDERATION.
    await expect.poll(() => simulationProcesses(pollen).filter(({ args }) => RAY.test(args)), { timeout: 15_000 }).toEqual([]);
    // Its processes end first, then its directory and the link to Ray's go.
    await expect.poll(() => ({ processes: simulationProcesses(pollen), links: rayLinks(pollen), federations: readdirSync(localFederationsDir(pollen.dataDir)) }),
      { timeout: 45_000 }).toEqual({ processes: [], links: [], federations: [] });
  }, 300_000);

  it('is the federation for more clients than a LOCAL run may start, up to 1,000', async () => {
    const { client, projectId } = await pollenWithProject({ MAX_CONCURRENT_JOBS: '0' });
    const appId = await uploadAppDir(client, projectId, DIGITS);
    const { createTrainingConfig } = await client.data(CreateTrainingConfigDocument, {
      input: { projectId, name: 'many clients', rounds: 3, clients: 1000 },
    });
    const local = await client.request(StartTrainingDocument, { input: { appId, configId: createTrainingConfig.id, federation: 'LOCAL' } });
    expect(errorCode(local)).toBe('BAD_USER_INPUT');
    expect(local.errors![0]!.message).toMatch(/MAX_LOCAL_SUPERNODES.*SIMULATION/);
    const { startTraining } = await client.data(StartTrainingDocument, { input: { appId, configId: createTrainingConfig.id, federation: 'SIMULATION' } });
    expect(startTraining).toMatchObject({ status: 'QUEUED', federation: 'SIMULATION', clients: 1000 });
    // Past the simulation's limit, the config itself is refused, naming the field.
    const tooMany = await client.request(CreateTrainingConfigDocument, { input: { projectId, name: 'too many', rounds: 3, clients: 1001 } });
    expect(errorCode(tooMany)).toBe('BAD_USER_INPUT');
    expect(tooMany.errors![0]!.extensions).toMatchObject({ field: 'clients' });
    expect(tooMany.errors![0]!.message).toMatch(/clients: must be an integer from 2 to 1000/);
  });

  it('cancelled mid-run is CANCELLED with its metrics kept, and nothing of Ray or Flower is left', async () => {
    const { pollen, session, client, projectId } = await pollenWithProject();
    const jobId = await queueJob(client, projectId, DIGITS, 100, undefined, { clients: 10, federation: 'SIMULATION' });
    const socket = connectWebSocket(pollen.wsUrl, session.accessToken);
    const metrics = socket.subscribe(RoundMetricsDocument, { jobId });
    const updates = socket.subscribe(TrainingJobUpdatedDocument, { jobId });
    await expect.poll(() => metrics.items.some(({ roundMetrics }) => roundMetrics.round >= 2), { timeout: 240_000, interval: 100 }).toBe(true);
    await client.data(CancelTrainingDocument, { id: jobId });
    await updates.ended;
    await socket.client.dispose();
    expect(updates.items.at(-1)!.trainingJobUpdated.status).toBe('CANCELLED');
    const { trainingJob } = await client.data(TrainingJobDocument, { id: jobId });
    expect(trainingJob!.metrics.length).toBeGreaterThan(3);
    await expect.poll(() => simulationProcesses(pollen), { timeout: 15_000 }).toEqual([]);
  }, 300_000);

  it('whose Pollen is killed with SIGKILL leaves no Ray process, and the restart fails it and removes the rest', async () => {
    const env = { JOB_LEASE: '3s' };
    const first = await pollenWithProject(env);
    const jobId = await queueJob(first.client, first.projectId, DIGITS, 100, undefined, { clients: 10, federation: 'SIMULATION' });
    const socket = connectWebSocket(first.pollen.wsUrl, first.session.accessToken);
    const metrics = socket.subscribe(RoundMetricsDocument, { jobId });
    await expect.poll(() => metrics.items.some(({ roundMetrics }) => roundMetrics.round >= 1), { timeout: 240_000, interval: 100 }).toBe(true);
    expect(simulationProcesses(first.pollen).some(({ args }) => /raylet/.test(args))).toBe(true);
    await first.pollen.stop('SIGKILL');
    await socket.client.dispose();
    // Without Pollen, the federation's guard (its stdin closed) ends the whole tree, Ray included.
    await expect.poll(() => simulationProcesses(first.pollen), { timeout: 20_000 }).toEqual([]);

    // What it leaves is its federation's directory and the short link to Ray's; the next start removes them.
    const [leftLink] = rayLinks(first.pollen);
    expect(leftLink).toBeDefined();
    const second = await PollenProcess.start({ env, database: first.pollen.database, dataDir: first.pollen.dataDir });
    try {
      const client = second.client(first.session.accessToken);
      await expect.poll(async () => (await client.data(TrainingJobDocument, { id: jobId })).trainingJob!.status, { timeout: 60_000, interval: 500 })
        .toBe('FAILED');
      const { trainingJob } = await client.data(TrainingJobDocument, { id: jobId });
      expect(trainingJob!.statusReason).toMatch(/^Interrupted by a restart at round \d+/);
      // Removed at the start, beside the restart's reconciliation of the job.
      await expect.poll(() => ({ link: existsSync(leftLink!), federations: readdirSync(localFederationsDir(first.pollen.dataDir)) }),
        { timeout: 15_000 }).toEqual({ link: false, federations: [] });
    } finally {
      await second.stop();
    }
  }, 300_000);
});

