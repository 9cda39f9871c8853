import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CancelTrainingDocument, CreateProjectDocument, CreateTrainingConfigDocument, ProjectJobsDocument, RoundMetricsDocument,
  StartTrainingDocument, TrainingJobDocument, TrainingJobLogsDocument, TrainingJobUpdatedDocument, UploadAppDocument,
  type RoundMetricsSubscription, type TrainingJobUpdatedSubscription,
} from './generated/graphql.js';
import { zipDirectory } from './support/fixtures.js';
import {
  connectWebSocket, errorCode, GraphQLClient, jobProcesses, localFederationsDir, PollenProcess, processesUnder, REPO_ROOT, runProcessesLeft, signUp,
  type WsConnection,
} from './support/testkit.js';

const DIGITS_APP = path.join(REPO_ROOT, 'examples/digits-app');
const fixtureApp = (name: string) => path.join(REPO_ROOT, 'test/fixtures/apps', name);

let pollen: PollenProcess;
let client: GraphQLClient;
let socket: WsConnection;
let projectId: string;

beforeAll(async () => {
  pollen = await PollenProcess.start({ env: { MAX_CONCURRENT_JOBS: '2' } });
  const signedUp = await signUp(pollen);
  client = signedUp.client;
  socket = connectWebSocket(pollen.wsUrl, signedUp.session.accessToken);
  projectId = (await client.data(CreateProjectDocument, { input: { name: 'federated digits' } })).createProject.id;
});
afterAll(async () => {
  await socket?.client.dispose();
  await pollen?.stop();
  expect(processesUnder(pollen.dataDir)).toEqual([]);
  pollen?.removeDataDir();
});

async function uploadApp(dir: string): Promise<string> {
  const result = await client.upload(UploadAppDocument, { projectId, file: null }, {
    file: { bytes: await zipDirectory(dir), filename: `${path.basename(dir)}.zip` },
  });
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data!.uploadApp.id;
}

async function saveConfig(rounds: number, clients = 2, runConfig?: Record<string, unknown>): Promise<string> {
  const { createTrainingConfig } = await client.data(CreateTrainingConfigDocument, {
    input: { projectId, name: `r${rounds}c${clients}`, rounds, clients, learningRate: 0.1, runConfig },
  });
  return createTrainingConfig.id;
}

async function start(appId: string, configId: string): Promise<string> {
  const { startTraining } = await client.data(StartTrainingDocument, { input: { appId, configId } });
  expect(startTraining.status).toBe('QUEUED');
  return startTraining.id;
}

/** The SuperLinks of Pollen's own federations ("PID ARGS"), to tell one federation from the next. */
const superlinks = () => processesUnder(localFederationsDir(pollen.dataDir))
  .filter((line) => line.includes('/flower-superlink ') && !line.includes('process_guard.py'));

type Update = TrainingJobUpdatedSubscription['trainingJobUpdated'];
type Metric = RoundMetricsSubscription['roundMetrics'];
const updates = (jobId: string) => socket.subscribe(TrainingJobUpdatedDocument, { jobId });
const finalStatus = async (collected: { items: Array<{ trainingJobUpdated: Update }>; ended: Promise<void> }) => {
  await collected.ended;
  return collected.items.at(-1)!.trainingJobUpdated;
};
const metricsOf = (items: Array<{ roundMetrics: Metric }>) => items.map((i) => i.roundMetrics);
const roundsOf = (metrics: Metric[], phase: string) => metrics.filter((m) => m.phase === phase).map((m) => m.round);

describe('a 2-client, 3-round run of the example app', () => {
  let jobId: string;
  let statuses: Update[];
  let live: Metric[];
  let secondSubscriber: Metric[];

  beforeAll(async () => {
    jobId = await start(await uploadApp(DIGITS_APP), await saveConfig(3));
    const jobUpdates = updates(jobId);
    const metrics = socket.subscribe(RoundMetricsDocument, { jobId, fromRound: 0 });
    const other = connectWebSocket(pollen.wsUrl, client.token);
    const otherMetrics = other.subscribe(RoundMetricsDocument, { jobId, fromRound: 0 });
    await Promise.all([jobUpdates.ended, metrics.ended, otherMetrics.ended]);
    await other.client.dispose();
    statuses = jobUpdates.items.map((i) => i.trainingJobUpdated);
    live = metricsOf(metrics.items);
    secondSubscriber = metricsOf(otherMetrics.items);
  }, 240_000);

  it('goes from QUEUED through RUNNING to COMPLETED', () => {
    const sequence = statuses.map((s) => s.status).filter((s, i, all) => s !== all[i - 1]);
    // The first update is the state at subscription time: a runner may already have claimed it.
    expect(['QUEUED', 'STARTING']).toContain(sequence[0]);
    expect(sequence).toContain('RUNNING');
    expect(sequence.at(-1)).toBe('COMPLETED');
    const last = statuses.at(-1)!;
    expect(last).toMatchObject({ currentRound: 3, totalRounds: 3, clients: 2, federation: 'LOCAL' });
    expect(last.flowerRunId).toMatch(/^\d+$/);
    expect(new Date(last.finishedAt!).getTime()).toBeGreaterThan(new Date(last.startedAt!).getTime());
  });

  it('streams 3 TRAIN and 3 EVALUATE records as they are aggregated, with rising accuracy', () => {
    expect(roundsOf(live, 'TRAIN')).toEqual([1, 2, 3]);
    expect(roundsOf(live, 'EVALUATE')).toEqual([1, 2, 3]);
    const accuracy = live.filter((m) => m.phase === 'SERVER_EVALUATE').map((m) => m.values.test_acc as number);
    expect(accuracy.length).toBeGreaterThanOrEqual(3);
    expect(accuracy.at(-1)!).toBeGreaterThan(accuracy[0]!);
    for (const metric of live) {
      expect(Object.values(metric.values).every((v) => ['number', 'string', 'boolean'].includes(typeof v))).toBe(true);
    }
  });

  it('shows two subscribers the same sequence', () => {
    expect(secondSubscriber).toEqual(live);
  });

  it('keeps the metrics, the latest ones and the ServerApp log on the job', async () => {
    const { trainingJob } = await client.data(TrainingJobDocument, { id: jobId, last: 20 });
    expect(trainingJob!.metrics).toEqual(live);
    // Each phase's last round, in phase order, the same as the full metrics say.
    const lastOfPhase = (phase: string) => trainingJob!.metrics.filter((m) => m.phase === phase).at(-1);
    expect(trainingJob!.latestMetrics).toEqual(['TRAIN', 'EVALUATE', 'SERVER_EVALUATE'].map(lastOfPhase).filter(Boolean));
    expect(trainingJob!.latestMetrics.map((m) => [m.phase, m.round])).toEqual(expect.arrayContaining([['TRAIN', 3], ['EVALUATE', 3]]));
    expect(trainingJob!.logs.length).toBeGreaterThan(0);
    expect(trainingJob!.logs.every((l) => !/\x1b\[/.test(l.line))).toBe(true);
    const { project } = await client.data(ProjectJobsDocument, { id: projectId, status: 'COMPLETED' });
    expect(project!.trainingJobs.edges.map((e) => e.node.id)).toContain(jobId);
  });

  it('replays stored metrics to a late subscriber and then completes', async () => {
    const replay = socket.subscribe(RoundMetricsDocument, { jobId, fromRound: 2 });
    await replay.ended;
    expect(metricsOf(replay.items)).toEqual(live.filter((m) => m.round >= 2));
    const state = updates(jobId);
    expect((await finalStatus(state)).status).toBe('COMPLETED');
    expect(state.items).toHaveLength(1);
  });

  it('leaves no process of the run behind, its federation waiting for the next run', async () => {
    await expect.poll(() => runProcessesLeft(pollen.dataDir, jobId), { timeout: 15_000 }).toEqual([]);
    expect(superlinks()).toHaveLength(1);
  });
});

describe('metric capture', () => {
  it('works for an app written by someone else, with its own metric names and plain FedAvg, on the federation the last run left', async () => {
    const waiting = superlinks();
    const jobId = await start(await uploadApp(fixtureApp('other-metrics-app')), await saveConfig(2));
    const metrics = socket.subscribe(RoundMetricsDocument, { jobId, fromRound: 0 });
    expect((await finalStatus(updates(jobId))).status).toBe('COMPLETED');
    await metrics.ended;
    const names = new Set(metricsOf(metrics.items).flatMap((m) => Object.keys(m.values)));
    expect([...names]).toEqual(expect.arrayContaining(['loss_tr', 'f1']));
    expect(roundsOf(metricsOf(metrics.items), 'TRAIN')).toEqual([1, 2]);
    expect(superlinks()).toEqual(waiting);
  }, 180_000);
});

describe('failures and cancellation', () => {
  it('fails a run whose client raises, with the error in the reason or the log, and stops its federation', async () => {
    const jobId = await start(await uploadApp(fixtureApp('crashing-app')), await saveConfig(2));
    const state = updates(jobId);
    const final = await finalStatus(state);
    expect(final.status).toBe('FAILED');
    const { trainingJob } = await client.data(TrainingJobDocument, { id: jobId, last: 5_000 });
    const evidence = `${trainingJob!.statusReason}\n${trainingJob!.logs.map((l) => l.line).join('\n')}`;
    expect(evidence).toMatch(/simulated client failure|failed/i);
    expect(trainingJob!.statusReason).toBeTruthy();
    // A federation whose run failed does not wait for the next: nothing of it is left.
    expect(jobProcesses(pollen.dataDir, jobId)).toEqual([]);
  }, 180_000);

  it('cancels a running job: stopped in Flower, torn down, CANCELLED, metrics kept', async () => {
    const jobId = await start(await uploadApp(DIGITS_APP), await saveConfig(100));
    const metrics = socket.subscribe(RoundMetricsDocument, { jobId });
    await expect.poll(() => metrics.items.length, { timeout: 120_000, interval: 200 }).toBeGreaterThan(0);
    const { cancelTraining } = await client.data(CancelTrainingDocument, { id: jobId });
    expect(cancelTraining.status).toBe('CANCELLED');
    expect(cancelTraining.statusReason).toMatch(/Cancelled at round \d+/);
    await metrics.ended;
    expect(jobProcesses(pollen.dataDir, jobId)).toEqual([]);
    const { trainingJob } = await client.data(TrainingJobDocument, { id: jobId });
    expect(trainingJob!.metrics.length).toBeGreaterThan(0);
    expect(errorCode(await client.request(CancelTrainingDocument, { id: jobId }))).toBe('CONFLICT');
  }, 180_000);

  it('cancels a queued job without starting anything', async () => {
    const appId = await uploadApp(DIGITS_APP);
    const configId = await saveConfig(100);
    // Two slots: fill them, so the third job waits.
    const running = [await start(appId, configId), await start(appId, configId)];
    const queued = await start(appId, configId);
    const { trainingJob } = await client.data(TrainingJobDocument, { id: queued });
    expect(trainingJob!.statusReason).toMatch(/position \d+ in line/);
    const { cancelTraining } = await client.data(CancelTrainingDocument, { id: queued });
    expect(cancelTraining).toMatchObject({ status: 'CANCELLED', startedAt: null });
    for (const id of running) await client.data(CancelTrainingDocument, { id });
  }, 240_000);
});

describe('starting', () => {
  it('refuses a config whose keys the app does not declare, naming them and the declared ones', async () => {
    const appId = await uploadApp(DIGITS_APP);
    const result = await client.request(StartTrainingDocument, {
      input: { appId, configId: await saveConfig(3, 2, { 'no-such-key': 1, 'local-epochs': 'two' }) },
    });
    expect(errorCode(result)).toBe('BAD_USER_INPUT');
    const message = result.errors![0]!.message;
    expect(message).toMatch(/"no-such-key" is not declared/);
    expect(message).toMatch(/"local-epochs" must be an integer/);
    expect(message).toMatch(/The app declares: .*num-server-rounds/);
  });

  it('refuses more SuperNodes than MAX_LOCAL_SUPERNODES', async () => {
    const result = await client.request(StartTrainingDocument, {
      input: { appId: await uploadApp(DIGITS_APP), configId: await saveConfig(3, 9) },
    });
    expect(errorCode(result)).toBe('BAD_USER_INPUT');
    expect(result.errors![0]!.message).toMatch(/MAX_LOCAL_SUPERNODES/);
  });

  it('ends an outsider\'s subscription with an error and keeps the connection usable', async () => {
    const jobId = (await client.data(ProjectJobsDocument, { id: projectId })).project!.trainingJobs.edges[0]!.node.id;
    const outsider = await signUp(pollen);
    const theirSocket = connectWebSocket(pollen.wsUrl, outsider.session.accessToken);
    try {
      const denied = theirSocket.subscribe(TrainingJobLogsDocument, { jobId });
      await denied.ended.catch(() => undefined);
      expect(denied.items).toEqual([]);
      expect(denied.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
      // The same socket still answers, and tells the outsider nothing.
      const lookup = await theirSocket.execute(TrainingJobDocument, { id: jobId });
      expect(lookup.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    } finally {
      await theirSocket.client.dispose();
    }
  });
});
