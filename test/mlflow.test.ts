import { createHash } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CreateProjectDocument, JobMirrorDocument, TrainingJobUpdatedDocument } from './generated/graphql.js';
import {
  connectWebSocket, MlflowServer, PollenProcess, queueJob, REPO_ROOT, signUp, TcpGate, type GraphQLClient,
} from './support/testkit.js';

const DIGITS_APP = path.join(REPO_ROOT, 'examples/digits-app');

// A real MLflow, reached through a gate the test can make hang; Pollen mirrors every job into it.
let mlflow: MlflowServer;
let gate: TcpGate;
let pollen: PollenProcess;
let owner: GraphQLClient;
let projectId: string;

beforeAll(async () => {
  mlflow = await MlflowServer.start();
  gate = await TcpGate.start(Number(new URL(mlflow.url).port));
  pollen = await PollenProcess.start({ env: { MLFLOW_TRACKING_URI: `http://127.0.0.1:${gate.port}` } });
  const signedUp = await signUp(pollen, 'mlflow_owner');
  owner = signedUp.client;
  projectId = (await owner.data(CreateProjectDocument, { input: { name: 'Digits in MLflow' } })).createProject.id;
}, 240_000);
afterAll(async () => {
  await pollen?.stop();
  pollen?.removeDataDir();
  await gate?.close();
  await mlflow?.stop();
});

/** Trains the digits example for two rounds (on the Simulation Engine: seconds) and waits for the job to end; returns its id. */
async function trainTwoRounds(): Promise<string> {
  const jobId = await queueJob(owner, projectId, DIGITS_APP, 2, undefined, { federation: 'SIMULATION' });
  const socket = connectWebSocket(pollen.wsUrl, owner.token);
  try {
    await socket.subscribe(TrainingJobUpdatedDocument, { jobId }).ended;
  } finally {
    await socket.client.dispose();
  }
  return jobId;
}

const mirrorOf = async (jobId: string) => (await owner.data(JobMirrorDocument, { id: jobId })).trainingJob!;

/** The MLflow run of a Pollen job, found by the tag Pollen gives it. */
async function runOf(jobId: string) {
  const { experiment } = await mlflow.api(`experiments/get-by-name?experiment_name=${encodeURIComponent('Digits in MLflow')}`);
  const { runs } = await mlflow.api('runs/search', {
    experiment_ids: [experiment.experiment_id], filter: `tags.\`pollen.job_id\` = '${jobId}'`,
  });
  expect(runs).toHaveLength(1);
  const run = runs[0] as { info: Record<string, any>; data: Record<'params' | 'tags' | 'metrics', Array<{ key: string; value: unknown }>> };
  const pairs = (list: Array<{ key: string; value: unknown }> = []) => Object.fromEntries(list.map(({ key, value }) => [key, value]));
  return { info: run.info, params: pairs(run.data.params), tags: pairs(run.data.tags), metrics: pairs(run.data.metrics) };
}

/** Each step of a metric's history in MLflow: [step, value]. */
async function history(runId: string, key: string): Promise<Array<[number, number]>> {
  const { metrics } = await mlflow.api(`metrics/get-history?run_id=${runId}&metric_key=${encodeURIComponent(key)}`);
  return (metrics as Array<{ step: number; value: number }>).map(({ step, value }) => [step, value] as [number, number]).sort(([a], [b]) => a - b);
}

describe('mirroring jobs into MLflow', () => {
  it('makes each job a run of its project\'s experiment: params, metrics by round, tags, the app and final model, the end status', async () => {
    const jobId = await trainTwoRounds();
    const job = await vi.waitFor(async () => {
      const mirrored = await mirrorOf(jobId);
      expect(mirrored.mlflowRun).toMatchObject({ status: 'UP_TO_DATE', detail: null, runId: expect.any(String) });
      expect((await runOf(jobId)).info.status).toBe('FINISHED');
      return mirrored;
    }, { timeout: 60_000, interval: 1_000 });
    expect(job.status).toBe('COMPLETED');

    const run = await runOf(jobId);
    expect(run.info.run_id).toBe(job.mlflowRun!.runId);
    expect(job.mlflowRun!.url).toBe(`http://127.0.0.1:${gate.port}/#/experiments/${run.info.experiment_id}/runs/${run.info.run_id}`);
    expect(run.params).toMatchObject({
      'config.name': '2 rounds', 'config.version': '1', rounds: '2', clients: '2', learning_rate: '0.01', batch_size: '32',
      federation: 'SIMULATION', 'run_config.num-server-rounds': '2', 'run_config.learning-rate': '0.01', 'run_config.batch-size': '32',
    });
    expect(run.tags).toMatchObject({
      'pollen.job_id': jobId, 'pollen.project_id': projectId, 'pollen.app_name': 'digits-app', 'pollen.app_version': '1.0.0',
      'pollen.federation': 'SIMULATION', 'pollen.status': 'COMPLETED', 'mlflow.user': 'mlflow_owner',
    });
    // Every numeric metric Pollen stored, as <phase>/<name> with the round as its step.
    for (const { round, phase, values } of job.metrics) {
      for (const [name, value] of Object.entries(values)) {
        expect(await history(run.info.run_id, `${phase}/${name}`), `${phase}/${name}`).toContainEqual([round, value]);
      }
    }
    expect(await history(run.info.run_id, 'TRAIN/train_loss')).toHaveLength(2);
    expect(Object.keys(run.metrics).sort()).toEqual([
      'EVALUATE/eval_acc', 'EVALUATE/eval_loss', 'SERVER_EVALUATE/test_acc', 'SERVER_EVALUATE/test_loss', 'TRAIN/train_loss',
    ]);

    const { files } = await mlflow.api(`artifacts/list?run_id=${run.info.run_id}&path=model`);
    expect(files).toEqual([expect.objectContaining({ path: `model/final-round-${job.finalCheckpoint!.round}.npz` })]);
    const model = await mlflow.artifact(run.info.run_id, `model/final-round-${job.finalCheckpoint!.round}.npz`);
    expect(createHash('sha256').update(model).digest('hex')).toBe(job.finalCheckpoint!.sha256);
    const app = await mlflow.artifact(run.info.run_id, 'app/digits-app-1.0.0.zip');
    expect(app.subarray(0, 4)).toEqual(Buffer.from('PK\x03\x04'));
  }, 600_000);

  it('never holds a job up: while MLflow hangs the job trains on, its mirror says it is behind, and catches up later', async () => {
    gate.hold();
    const jobId = await trainTwoRounds();
    const meanwhile = await mirrorOf(jobId);
    expect(meanwhile.status).toBe('COMPLETED');
    expect(meanwhile.mlflowRun).toMatchObject({ status: 'BEHIND', runId: null });
    expect(meanwhile.mlflowRun!.detail).toMatch(/^MLflow at http:\/\/127\.0\.0\.1:\d+ cannot be reached \(.+\)\. \d+ updates? wait in Pollen and are retried\.$/);
    expect(pollen.logs()).toContainEqual(expect.objectContaining({ msg: 'MLflow mirror fell behind: updates wait and are retried' }));

    gate.pass();
    const job = await vi.waitFor(async () => {
      const mirrored = await mirrorOf(jobId);
      expect(mirrored.mlflowRun).toMatchObject({ status: 'UP_TO_DATE', detail: null });
      expect((await runOf(jobId)).info.status).toBe('FINISHED');
      return mirrored;
    }, { timeout: 180_000, interval: 2_000 });
    const run = await runOf(jobId);
    // Nothing was lost while it waited: every round of every metric, in order.
    expect(await history(run.info.run_id, 'TRAIN/train_loss')).toEqual(job.metrics.filter((m) => m.phase === 'TRAIN')
      .map(({ round, values }) => [round, values.train_loss]));
    expect(await history(run.info.run_id, 'SERVER_EVALUATE/test_acc')).toHaveLength(3);
    expect(pollen.logs()).toContainEqual(expect.objectContaining({ msg: 'MLflow mirror caught up' }));
  }, 600_000);
});
