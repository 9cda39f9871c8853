import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CreateProjectDocument, CreateTrainingConfigDocument, RoundMetricsDocument, StartTrainingDocument, TrainingJobDocument,
  TrainingJobUpdatedDocument, UploadAppDocument,
} from './generated/graphql.js';
import { zipDirectory } from './support/fixtures.js';
import { connectWebSocket, PollenProcess, processesUnder, REPO_ROOT, signUp } from './support/testkit.js';

const started: PollenProcess[] = [];
afterAll(async () => {
  for (const pollen of started) {
    await pollen.stop();
    expect(processesUnder(pollen.dataDir)).toEqual([]);
    pollen.removeDataDir();
  }
});

async function pollenWithProject(env: Record<string, string>, reuse?: PollenProcess) {
  const pollen = await PollenProcess.start({ env, ...(reuse ? { database: reuse.database, dataDir: reuse.dataDir } : {}) });
  if (!reuse) started.push(pollen);
  return pollen;
}

async function queueJob(pollen: PollenProcess, token: string, projectId: string, app: string, rounds: number, runConfig?: Record<string, unknown>) {
  const client = pollen.client(token);
  const upload = await client.upload(UploadAppDocument, { projectId, file: null }, {
    file: { bytes: await zipDirectory(app), filename: 'app.zip' },
  });
  const { createTrainingConfig } = await client.data(CreateTrainingConfigDocument, {
    input: { projectId, name: `faults ${rounds}`, rounds, clients: 2, runConfig },
  });
  const { startTraining } = await client.data(StartTrainingDocument, {
    input: { appId: upload.data!.uploadApp.id, configId: createTrainingConfig.id },
  });
  return startTraining.id;
}

describe('the watchdog', () => {
  it('fails a run whose SuperNodes never all connect, and tears it down', async () => {
    const pollen = await pollenWithProject({ NODE_CONNECT_TIMEOUT: '5s' });
    const { session, client } = await signUp(pollen);
    const { createProject } = await client.data(CreateProjectDocument, { input: { name: 'waiting' } });
    // The app waits for three nodes; the federation has two.
    const jobId = await queueJob(pollen, session.accessToken, createProject.id,
      path.join(REPO_ROOT, 'test/fixtures/apps/other-metrics-app'), 2, { 'min-nodes': 3 });
    const socket = connectWebSocket(pollen.wsUrl, session.accessToken);
    const updates = socket.subscribe(TrainingJobUpdatedDocument, { jobId });
    await updates.ended;
    await socket.client.dispose();
    const final = updates.items.at(-1)!.trainingJobUpdated;
    expect(final.status).toBe('FAILED');
    expect(final.statusReason).toMatch(/watchdog: only 2 of the 3 SuperNodes it needs connected within NODE_CONNECT_TIMEOUT \(5 s\)/);
    expect(processesUnder(path.join(pollen.dataDir, 'jobs', jobId))).toEqual([]);
  }, 180_000);
});

describe('a restart of Pollen', () => {
  it('fails the job that was running (keeping its metrics), kills its Flower processes, and runs the queued one', async () => {
    const env = { JOB_LEASE: '3s', MAX_CONCURRENT_JOBS: '1' };
    const first = await pollenWithProject(env);
    const { session, client } = await signUp(first);
    const { createProject } = await client.data(CreateProjectDocument, { input: { name: 'restarts' } });
    const digits = path.join(REPO_ROOT, 'examples/digits-app');
    const interrupted = await queueJob(first, session.accessToken, createProject.id, digits, 100);
    const waiting = await queueJob(first, session.accessToken, createProject.id, digits, 2);

    const socket = connectWebSocket(first.wsUrl, session.accessToken);
    const metrics = socket.subscribe(RoundMetricsDocument, { jobId: interrupted });
    await expect.poll(() => metrics.items.length, { timeout: 120_000, interval: 200 }).toBeGreaterThan(1);
    await first.stop('SIGKILL');
    // Without Pollen, its Flower processes stop themselves (their guard's stdin closed).
    await expect.poll(() => processesUnder(path.join(first.dataDir, 'jobs', interrupted)), { timeout: 15_000 }).toEqual([]);

    const second = await pollenWithProject(env, first);
    try {
      const secondSocket = connectWebSocket(second.wsUrl, session.accessToken);
      const next = secondSocket.subscribe(TrainingJobUpdatedDocument, { jobId: waiting });
      await next.ended;
      expect(next.items.at(-1)!.trainingJobUpdated.status).toBe('COMPLETED');
      const { trainingJob } = await second.client(session.accessToken).data(TrainingJobDocument, { id: interrupted });
      expect(trainingJob!.status).toBe('FAILED');
      expect(trainingJob!.statusReason).toMatch(/^Interrupted by a restart at round \d+/);
      expect(trainingJob!.metrics.length).toBeGreaterThan(1);
      expect(trainingJob!.logs.length).toBeGreaterThan(0);
      await secondSocket.client.dispose();
    } finally {
      await second.stop();
    }
  }, 300_000);
});
