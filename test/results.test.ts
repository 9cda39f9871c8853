import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import {
  AddProjectMemberDocument, CheckpointLinkDocument, CompareJobsDocument, CreateProjectDocument, CreateTrainingConfigDocument,
  DeleteAppDocument, DeleteProjectDocument, ForkTrainingDocument, JobResultsDocument, StartTrainingDocument, TrainingJobUpdatedDocument, UploadAppDocument,
  type JobResultsQuery, type StartTrainingInput,
} from './generated/graphql.js';
import { zipDirectory } from './support/fixtures.js';
import { connectWebSocket, errorCode, GraphQLClient, REPO_ROOT, runProcessesLeft, signUp, usePollen, type WsConnection } from './support/testkit.js';

const DIGITS_APP = path.join(REPO_ROOT, 'examples/digits-app');
const EVALUATE_MODEL = path.join(REPO_ROOT, 'examples/evaluate-digits-model.py');
const PYTHON = path.join(REPO_ROOT, '.venv/bin/python');

// Five runs of the digits example side by side.
const pollen = usePollen({ env: { MAX_CONCURRENT_JOBS: '5' } });
let owner: GraphQLClient;
let socket: WsConnection;
const team = {} as Record<'editor' | 'viewer' | 'outsider', { client: GraphQLClient; socket: WsConnection }>;
let projectId: string;
let appId: string;
let otherAppId: string;
const downloads = mkdtempSync(path.join(tmpdir(), 'pollen-downloads-'));

type Job = NonNullable<JobResultsQuery['trainingJob']>;
const results = async (id: string): Promise<Job> => (await owner.data(JobResultsDocument, { id })).trainingJob!;
const valuesOf = (job: Job, round: number, phase: string) => job.metrics.find((m) => m.round === round && m.phase === phase)?.values;

/** Uploads the digits example; `note` makes a different archive (the same bytes are the same app). */
async function upload(note = ''): Promise<string> {
  const result = await owner.upload(UploadAppDocument, { projectId, file: null }, {
    file: { bytes: await zipDirectory(DIGITS_APP, note ? { 'NOTE.txt': note } : {}), filename: 'digits-app.zip' },
  });
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data!.uploadApp.id;
}

async function config(rounds: number): Promise<string> {
  const { createTrainingConfig } = await owner.data(CreateTrainingConfigDocument, { input: { projectId, name: `${rounds} rounds`, rounds, clients: 2 } });
  return createTrainingConfig.id;
}

/** Starts a run on the Simulation Engine (a round takes well under a second; LOCAL keeps models the same way, see the dashboard and remote-node tests). */
async function start(input: Omit<StartTrainingInput, 'configId'> & { rounds: number }): Promise<string> {
  const { rounds, ...rest } = input;
  const { startTraining } = await owner.data(StartTrainingDocument, { input: { federation: 'SIMULATION', ...rest, configId: await config(rounds) } });
  return startTraining.id;
}

/** Waits for the job to finish (its update stream ends) and returns its results. */
async function finished(jobId: string): Promise<Job> {
  await socket.subscribe(TrainingJobUpdatedDocument, { jobId }).ended;
  return results(jobId);
}

/** GETs a path of Pollen's with the owner's token unless told otherwise. */
function get(urlPath: string, headers: Record<string, string> = { authorization: `Bearer ${owner.token}` }) {
  return fetch(new URL(urlPath, pollen.origin), { headers });
}

async function save(response: Response, name: string): Promise<{ file: string; bytes: Buffer }> {
  expect(response.status).toBe(200);
  const bytes = Buffer.from(await response.arrayBuffer());
  const file = path.join(downloads, name);
  writeFileSync(file, bytes);
  return { file, bytes };
}

/** The app's own server-side evaluation, recomputed in Python from a downloaded model. */
async function evaluateLocally(file: string): Promise<{ arrays: string[]; dtypes: string[]; test_loss: number; test_acc: number }> {
  const { stdout } = await promisify(execFile)(PYTHON, [EVALUATE_MODEL, file]);
  return JSON.parse(stdout);
}

let plain: string;
let targetStop: string;
let patienceStop: string;
let unknownMetric: string;
let fork: string;

beforeAll(async () => {
  const signedUp = await signUp(pollen);
  owner = signedUp.client;
  socket = connectWebSocket(pollen.wsUrl, owner.token);
  projectId = (await owner.data(CreateProjectDocument, { input: { name: 'results' } })).createProject.id;
  for (const role of ['editor', 'viewer', 'outsider'] as const) {
    const member = await signUp(pollen);
    team[role] = { client: member.client, socket: connectWebSocket(pollen.wsUrl, member.client.token) };
    if (role !== 'outsider') {
      await owner.data(AddProjectMemberDocument, { projectId, username: member.session.user.username, role: role === 'editor' ? 'EDITOR' : 'VIEWER' });
    }
  }
  [appId, otherAppId] = await Promise.all([upload(), upload('a copy to delete')]);

  plain = await start({ appId, rounds: 2 });
  targetStop = await start({
    appId: otherAppId, rounds: 3, stopWhen: { metric: 'test_acc', phase: 'SERVER_EVALUATE', goal: 'MAXIMIZE', target: 0.5 },
  });
  // Judged on the loss going the wrong way: round 1 is "best", round 2 does not beat it. Round 0
  // (the initial model, which has the highest loss) is the BEST checkpoint kept, round 1 is not.
  patienceStop = await start({
    appId, rounds: 4, keepCheckpoints: 1, stopWhen: { metric: 'test_loss', phase: 'SERVER_EVALUATE', goal: 'MAXIMIZE', patience: 1 },
  });
  unknownMetric = await start({ appId, rounds: 3, stopWhen: { metric: 'f1', phase: 'EVALUATE', goal: 'MAXIMIZE', target: 0.9 } });

  // The editor forks the plain run from round 1 over WebSocket as soon as its round-1 model is kept.
  await vi.waitFor(async () => expect((await results(plain)).checkpoints.map((c) => c.round)).toContain(1), { timeout: 120_000, interval: 500 });
  const forked = await team.editor.socket.execute(ForkTrainingDocument, { input: { jobId: plain, fromRound: 1, configId: await config(1) } });
  expect(forked.errors).toBeUndefined();
  fork = forked.data!.forkTraining.id;
  expect(forked.data!.forkTraining).toMatchObject({ status: 'QUEUED', totalRounds: 2, parentRound: 1, parent: { id: plain } });

  await Promise.all([plain, targetStop, patienceStop, unknownMetric, fork].map(finished));
}, 300_000);

afterAll(async () => {
  await Promise.all([socket, ...Object.values(team).map((member) => member.socket)].map((one) => one?.client.dispose()));
  rmSync(downloads, { recursive: true, force: true });
});

describe('every round of a run is kept as a model to download', () => {
  it('keeps the initial model and each round, the final one marked, with its arrays and size', async () => {
    const job = await results(plain);
    expect(job.status).toBe('COMPLETED');
    expect(job.checkpoints.map((c) => [c.round, c.reasons])).toEqual([[0, ['LATEST']], [1, ['LATEST']], [2, ['LATEST', 'FINAL']]]);
    expect(job.finalCheckpoint!.round).toBe(2);
    expect(job.bestCheckpoint).toBeNull();
    expect(job.finalCheckpoint!.arrays).toEqual([{ name: '0', shape: [64, 10], dtype: 'float64' }, { name: '1', shape: [10], dtype: 'float64' }]);
    expect(job.checkpointsSizeBytes).toBe(job.checkpoints.reduce((sum, c) => sum + c.sizeBytes, 0));
    expect(job.finalCheckpoint!.downloadPath).toBe(`/jobs/${plain}/checkpoints/2`);
  });

  it('downloads the final model as npz that reproduces the last server-side evaluation exactly', async () => {
    const job = await results(plain);
    const { file, bytes } = await save(await get(job.finalCheckpoint!.downloadPath), 'final.npz');
    expect(bytes.length).toBe(job.finalCheckpoint!.sizeBytes);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(job.finalCheckpoint!.sha256);
    const local = await evaluateLocally(file);
    expect(local.arrays).toEqual(['0', '1']);
    expect({ test_loss: local.test_loss, test_acc: local.test_acc }).toEqual(valuesOf(job, 2, 'SERVER_EVALUATE'));
  });

  it('downloads the same arrays as safetensors, which the safetensors library loads', async () => {
    const job = await results(plain);
    const { file } = await save(await get(`${job.finalCheckpoint!.downloadPath}?format=safetensors`), 'final.safetensors');
    const local = await evaluateLocally(file);
    expect(local.dtypes).toEqual(['float64', 'float64']);
    expect({ test_loss: local.test_loss, test_acc: local.test_acc }).toEqual(valuesOf(job, 2, 'SERVER_EVALUATE'));
  });

  it('resumes a broken download with a byte range', async () => {
    const job = await results(plain);
    const whole = Buffer.from(await (await get(job.finalCheckpoint!.downloadPath)).arrayBuffer());
    const tail = await get(job.finalCheckpoint!.downloadPath, { authorization: `Bearer ${owner.token}`, range: 'bytes=100-' });
    expect(tail.status).toBe(206);
    expect(tail.headers.get('content-range')).toBe(`bytes 100-${whole.length - 1}/${whole.length}`);
    expect(Buffer.from(await tail.arrayBuffer()).equals(whole.subarray(100))).toBe(true);
  });

  it('gives a browser a signed link that needs no header, for that checkpoint only', async () => {
    const { trainingJob } = await owner.data(CheckpointLinkDocument, { id: plain, format: 'SAFETENSORS' });
    const link = trainingJob!.finalCheckpoint!.downloadLink;
    expect(link).toMatch(new RegExp(`^/jobs/${plain}/checkpoints/2\\?format=safetensors&link=`));
    const response = await get(link, {});
    expect(response.status).toBe(200);
    expect(response.headers.get('content-disposition')).toContain('.safetensors');
    await response.arrayBuffer();
    expect((await get(link.replace('/checkpoints/2?', '/checkpoints/1?'), {})).status).toBe(401);
    // A link is no access token.
    const token = new URL(link, pollen.origin).searchParams.get('link')!;
    expect(errorCode(await new GraphQLClient(pollen.url, token).request(JobResultsDocument, { id: plain }))).toBe('UNAUTHENTICATED');
  });

  it('lets project members download and no one else see that the job exists', async () => {
    const finalPath = (await results(plain)).finalCheckpoint!.downloadPath;
    const as = (client: GraphQLClient) => ({ authorization: `Bearer ${client.token}` });
    expect((await get(finalPath, as(team.viewer.client))).status).toBe(200);
    expect((await get(finalPath, as(team.editor.client))).status).toBe(200);
    const outsider = await get(finalPath, as(team.outsider.client));
    expect(outsider.status).toBe(404);
    expect(await outsider.json()).toMatchObject({ errors: [{ extensions: { code: 'NOT_FOUND' } }] });
    expect((await get(finalPath, {})).status).toBe(401);
    expect((await get(`/jobs/${plain}/checkpoints/7`)).status).toBe(404);
    // Over WebSocket, a viewer gets a signed link like anyone else who may read the job.
    const viaSocket = await team.viewer.socket.execute(CheckpointLinkDocument, { id: plain, format: 'NPZ' });
    expect((await get(viaSocket.data!.trainingJob!.finalCheckpoint!.downloadLink, {})).status).toBe(200);
    expect(errorCode(await team.outsider.socket.execute(CheckpointLinkDocument, { id: plain }))).toBe('NOT_FOUND');
    const badFormat = await get(`${finalPath}?format=pickle`);
    expect(badFormat.status).toBe(400);
    expect(await badFormat.json()).toMatchObject({ errors: [{ extensions: { code: 'BAD_USER_INPUT' } }] });
  });
});

describe('a fork goes on from a kept round', () => {
  it('numbers its rounds on from the parent, and its first round reproduces the parent\'s next round', async () => {
    const [parent, child] = await Promise.all([results(plain), results(fork)]);
    expect(child).toMatchObject({ status: 'COMPLETED', parentRound: 1, totalRounds: 2, currentRound: 2, parent: { id: plain } });
    expect(parent.forks).toEqual([{ id: fork, parentRound: 1 }]);
    for (const phase of ['TRAIN', 'EVALUATE', 'SERVER_EVALUATE']) {
      expect(valuesOf(child, 2, phase), phase).toEqual(valuesOf(parent, 2, phase));
    }
    // It starts from the parent's round-1 model: evaluated again, it scores what the parent's did.
    expect(valuesOf(child, 1, 'SERVER_EVALUATE')).toEqual(valuesOf(parent, 1, 'SERVER_EVALUATE'));
    expect(child.checkpoints.map((c) => c.round)).toEqual([1, 2]);
    expect(child.finalCheckpoint!.sha256).toBe(parent.finalCheckpoint!.sha256);
  });

  it('is for editors and owners, over HTTP and WebSocket alike', async () => {
    const input = { jobId: plain, fromRound: 2 };
    for (const transport of ['http', 'ws'] as const) {
      const attempt = (who: 'viewer' | 'outsider') => (transport === 'http'
        ? team[who].client.request(ForkTrainingDocument, { input })
        : team[who].socket.execute(ForkTrainingDocument, { input }));
      expect(errorCode(await attempt('viewer')), transport).toBe('FORBIDDEN');
      expect(errorCode(await attempt('outsider')), transport).toBe('NOT_FOUND');
    }
  });

  it('is refused clearly when the checkpoint is gone, the config is another project\'s, or the app was deleted', async () => {
    const notKept = await owner.request(ForkTrainingDocument, { input: { jobId: patienceStop, fromRound: 1 } });
    expect(errorCode(notKept)).toBe('BAD_USER_INPUT');
    expect(JSON.stringify(notKept.errors)).toContain('keeps no checkpoint of round 1 (kept: 0, 2)');

    const elsewhere = (await owner.data(CreateProjectDocument, { input: { name: 'elsewhere' } })).createProject.id;
    const { createTrainingConfig } = await owner.data(CreateTrainingConfigDocument, { input: { projectId: elsewhere, name: 'c', rounds: 1, clients: 2 } });
    expect(errorCode(await owner.request(ForkTrainingDocument, { input: { jobId: plain, fromRound: 2, configId: createTrainingConfig.id } })))
      .toBe('BAD_USER_INPUT');

    await owner.data(DeleteAppDocument, { id: otherAppId });
    const deleted = await owner.request(ForkTrainingDocument, { input: { jobId: targetStop, fromRound: 1 } });
    expect(errorCode(deleted)).toBe('CONFLICT');
  });
});

describe('early stopping', () => {
  it('stops cleanly when the target is reached, the last round\'s model being the final one', async () => {
    const job = await results(targetStop);
    expect(job).toMatchObject({ status: 'COMPLETED', currentRound: 1, totalRounds: 3 });
    expect(job.statusReason).toMatch(/^Stopped early after round 1: test_acc \(SERVER_EVALUATE\) reached the target 0\.5 \(0\.\d+\)\.$/);
    expect(job.finalCheckpoint!.round).toBe(1);
    expect(Math.max(...job.metrics.map((m) => m.round))).toBe(1);
    await expect.poll(() => runProcessesLeft(pollen.dataDir, targetStop), { timeout: 15_000 }).toEqual([]);
  });

  it('stops after `patience` rounds without improvement, keeping the best, the latest and the final model', async () => {
    const job = await results(patienceStop);
    expect(job).toMatchObject({ status: 'COMPLETED', currentRound: 2, totalRounds: 4 });
    expect(job.statusReason).toMatch(/^Stopped early after round 2: test_loss \(SERVER_EVALUATE\) did not improve on [\d.]+ \(round 1\) by more than 0 for 1 round\.$/);
    expect(job.checkpoints.map((c) => [c.round, c.reasons])).toEqual([[0, ['BEST']], [2, ['LATEST', 'FINAL']]]);
    expect(job.bestCheckpoint!.round).toBe(0);
    expect(job.checkpointsSizeBytes).toBe(job.checkpoints.reduce((sum, c) => sum + c.sizeBytes, 0));
  });

  it('fails a run whose rule names a metric it does not report, after its first round, keeping its models', async () => {
    const job = await results(unknownMetric);
    expect(job.status).toBe('FAILED');
    expect(job.statusReason).toBe('The stop rule\'s metric "f1" is not among the numeric EVALUATE metrics this run reports (eval_acc, eval_loss); ' +
      'stopped after round 1.');
    expect(job.checkpoints.map((c) => c.round)).toEqual([0, 1]);
  });

  it('refuses a rule that cannot fire', async () => {
    const attempt = await owner.request(StartTrainingDocument, {
      input: { appId, configId: await config(2), stopWhen: { metric: 'test_acc', phase: 'SERVER_EVALUATE', goal: 'MAXIMIZE', patience: 0 } },
    });
    expect(errorCode(attempt), JSON.stringify(attempt.errors)).toBe('BAD_USER_INPUT');
    const neither = await owner.request(StartTrainingDocument, {
      input: { appId, configId: await config(2), stopWhen: { metric: 'test_acc', phase: 'SERVER_EVALUATE', goal: 'MAXIMIZE' } },
    });
    expect(errorCode(neither)).toBe('BAD_USER_INPUT');
  });
});

describe('comparing runs', () => {
  it('returns jobs in the order asked, null for those the caller may not see, with their metrics as series', async () => {
    const { trainingJobs } = await team.viewer.client.data(CompareJobsDocument, {
      ids: [fork, plain, '0123456789abcdef01234567', 'not-an-id'], phase: 'SERVER_EVALUATE', names: ['test_acc'],
    });
    expect(trainingJobs.map((job) => job?.id ?? null)).toEqual([fork, plain, null, null]);
    const [child, parent] = trainingJobs;
    expect(parent!.metricSeries).toHaveLength(1);
    expect(parent!.metricSeries[0]!.points.map((p) => p.round)).toEqual([0, 1, 2]);
    expect(child!.metricSeries[0]!.points.map((p) => p.round)).toEqual([1, 2]);
    expect(child!.metricSeries[0]!.points.at(-1)).toEqual(parent!.metricSeries[0]!.points.at(-1));
    const hidden = await team.outsider.client.data(CompareJobsDocument, { ids: [plain] });
    expect(hidden.trainingJobs).toEqual([null]);
  });
});

describe('deleting the project', () => {
  it('deletes every checkpoint its jobs kept, records and stored files alike', async () => {
    const database = new mongoose.mongo.MongoClient(inject('mongoUri'));
    try {
      const db = (await database.connect()).db(pollen.database as string);
      const stored = async () => Promise.all(['checkpoints', 'checkpoints.files', 'checkpoints.chunks'].map((name) => db.collection(name).countDocuments()));
      expect((await stored()).every((count) => count > 0)).toBe(true);
      await owner.data(DeleteProjectDocument, { id: projectId });
      expect(await stored()).toEqual([0, 0, 0]);
    } finally {
      await database.close();
    }
  });
});
