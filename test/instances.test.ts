import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateProjectDocument, CreateTrainingConfigDocument, RoundMetricsDocument, StartTrainingDocument, TrainingJobDocument, type FederationKind,
  TrainingJobUpdatedDocument, UploadAppDocument,
} from './generated/graphql.js';
import { zipDirectory } from './support/fixtures.js';
import { connectWebSocket, GraphQLClient, jobProcesses, PollenProcess, processesUnder, REPO_ROOT, signUp } from './support/testkit.js';
import { freePort } from '../src/runner/free-port.js';

let redis: ChildProcess;
let first: PollenProcess;
let second: PollenProcess;
let token: string;
let client: GraphQLClient;
let appId: string;
let projectId: string;

/** Debian's redis-server on a free loopback port, with nothing written to disk. */
async function startRedis(): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (/Ready to accept connections/.test(line)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
  });
  return { child, url: `redis://127.0.0.1:${port}` };
}

beforeAll(async () => {
  const started = await startRedis();
  redis = started.child;
  // One database, one Redis, one signing secret: two instances of one API.
  const shared = { REDIS_URL: started.url, JWT_SECRET: 'a-shared-secret-of-at-least-32-bytes!', JOB_LEASE: '3s', MAX_CONCURRENT_JOBS: '1' };
  first = await PollenProcess.start({ env: shared });
  second = await PollenProcess.start({ env: shared, database: first.database });
  const signedUp = await signUp(first);
  token = signedUp.session.accessToken;
  client = signedUp.client;
  projectId = (await client.data(CreateProjectDocument, { input: { name: 'two instances' } })).createProject.id;
  const upload = await client.upload(UploadAppDocument, { projectId, file: null }, {
    file: { bytes: await zipDirectory(path.join(REPO_ROOT, 'examples/digits-app')), filename: 'digits.zip' },
  });
  appId = upload.data!.uploadApp.id;
}, 120_000);

afterAll(async () => {
  for (const pollen of [first, second]) {
    await pollen?.stop();
    expect(processesUnder(pollen.dataDir)).toEqual([]);
    pollen?.removeDataDir();
  }
  redis?.kill('SIGTERM');
});

async function startJob(rounds: number, federation: FederationKind = 'LOCAL'): Promise<string> {
  const { createTrainingConfig } = await client.data(CreateTrainingConfigDocument, {
    input: { projectId, name: `r${rounds}`, rounds, clients: 2 },
  });
  return (await client.data(StartTrainingDocument, { input: { appId, configId: createTrainingConfig.id, federation } })).startTraining.id;
}

/** The instance whose runner took the job: its job folder is under that instance's DATA_DIR. */
const ranOn = (jobId: string) => [first, second].filter((p) => existsSync(path.join(p.dataDir, 'jobs', jobId)));

describe('two Pollen instances sharing a database and Redis', () => {
  it('share the queue, each job claimed by exactly one, and stream metrics to subscribers on either', async () => {
    // Each instance runs one job at a time, so the two jobs land on different instances (simulated
    // runs: the queue and the streams are what this is about, and they take seconds).
    const jobs = [await startJob(2, 'SIMULATION'), await startJob(2, 'SIMULATION')];
    const firstSocket = connectWebSocket(first.wsUrl, token);
    const secondSocket = connectWebSocket(second.wsUrl, token);
    const watched = jobs.flatMap((jobId) => [firstSocket, secondSocket].map((socket) => ({
      jobId, updates: socket.subscribe(TrainingJobUpdatedDocument, { jobId }), metrics: socket.subscribe(RoundMetricsDocument, { jobId, fromRound: 0 }),
    })));
    await Promise.all(watched.flatMap((w) => [w.updates.ended, w.metrics.ended]));
    await firstSocket.client.dispose();
    await secondSocket.client.dispose();

    for (const jobId of jobs) expect(ranOn(jobId)).toHaveLength(1);
    expect(new Set(jobs.map((jobId) => ranOn(jobId)[0]))).toEqual(new Set([first, second]));
    for (const { jobId, updates, metrics } of watched) {
      expect(updates.items.at(-1)!.trainingJobUpdated.status, jobId).toBe('COMPLETED');
      expect(metrics.items.filter((m) => m.roundMetrics.phase === 'TRAIN').map((m) => m.roundMetrics.round)).toEqual([1, 2]);
    }
    // Subscribers on both instances saw the same sequence, whichever instance ran the job.
    for (const jobId of jobs) {
      const [onFirst, onSecond] = watched.filter((w) => w.jobId === jobId).map((w) => w.metrics.items);
      expect(onFirst).toEqual(onSecond);
    }
  }, 300_000);

  it('fails a job whose instance was killed (kill -9) on the other instance once the lease ran out', async () => {
    const jobId = await startJob(100);
    const socket = connectWebSocket(first.wsUrl, token);
    const metrics = socket.subscribe(RoundMetricsDocument, { jobId });
    await expect.poll(() => ranOn(jobId).length, { timeout: 60_000 }).toBe(1);
    await expect.poll(() => metrics.items.length, { timeout: 120_000, interval: 200 }).toBeGreaterThan(0).catch(async (error: Error) => {
      // Once seen in a full run under load (and never alone): say what became of the job.
      const { trainingJob } = await client.data(TrainingJobDocument, { id: jobId });
      throw new Error(`${error.message}\nThe job is ${trainingJob?.status} (${trainingJob?.statusReason}); subscription errors: ` +
        `${JSON.stringify(metrics.errors ?? null)}\n--- first:\n${first.output.slice(-20).join('\n')}\n--- second:\n${second.output.slice(-20).join('\n')}`);
    });
    const [runner] = ranOn(jobId);
    const survivor = runner === first ? second : first;
    await runner!.stop('SIGKILL');
    await Promise.resolve(socket.client.dispose()).catch(() => undefined);

    const survivorClient = survivor.client(token);
    await expect.poll(async () => (await survivorClient.data(TrainingJobDocument, { id: jobId })).trainingJob!.status,
      { timeout: 60_000, interval: 500 }).toBe('FAILED');
    const { trainingJob } = await survivorClient.data(TrainingJobDocument, { id: jobId });
    expect(trainingJob!.statusReason).toMatch(/^Interrupted by a restart at round \d+/);
    expect(trainingJob!.metrics.length).toBeGreaterThan(0);
    await expect.poll(() => jobProcesses(runner!.dataDir, jobId), { timeout: 15_000 }).toEqual([]);
  }, 300_000);
});
