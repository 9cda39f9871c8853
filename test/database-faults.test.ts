import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CreateProjectDocument, MeDocument, ProjectDocument, ProjectJobsDocument, RoundMetricsDocument, StartTrainingDocument,
  TrainingJobDocument, TrainingJobUpdatedDocument,
} from './generated/graphql.js';
import { connectWebSocket, errorCode, OwnFerretDB, PollenProcess, processesUnder, queueJob, REPO_ROOT, signUp } from './support/testkit.js';

const DIGITS_APP = path.join(REPO_ROOT, 'examples/digits-app');

// A database of this file's own, so that it can be stopped and started again (same port, same store).
let database: OwnFerretDB | undefined;
let pollen: PollenProcess | undefined;
afterAll(async () => {
  await pollen?.stop();
  await database?.remove();
  if (pollen) {
    expect(processesUnder(pollen.dataDir)).toEqual([]);
    pollen.removeDataDir();
  }
});

describe('FerretDB stopped and restarted while Pollen serves', () => {
  it('fails requests fast and clearly, reports it on /readyz, and recovers by itself with no job lost', async () => {
    database = await OwnFerretDB.start();
    // A short lease, so that it runs out during the outage: the runner must not give up its own job.
    pollen = await PollenProcess.start({ env: { MONGODB_URI: `${database.uri}pollen`, MAX_CONCURRENT_JOBS: '1', JOB_LEASE: '5s' } });
    const { session, client } = await signUp(pollen);
    const { createProject } = await client.data(CreateProjectDocument, { input: { name: 'through an outage' } });
    const running = await queueJob(client, createProject.id, DIGITS_APP, 2);
    // The job that waits in line runs on the Simulation Engine: its one round takes a fraction of a second.
    const waiting = await queueJob(client, createProject.id, DIGITS_APP, 1, undefined, { federation: 'SIMULATION' });
    const { trainingJob: before } = await client.data(TrainingJobDocument, { id: waiting });

    const socket = connectWebSocket(pollen.wsUrl, session.accessToken);
    try {
      const runningUpdates = socket.subscribe(TrainingJobUpdatedDocument, { jobId: running });
      const metrics = socket.subscribe(RoundMetricsDocument, { jobId: running });
      await expect.poll(() => metrics.items.length, { timeout: 180_000, interval: 200 }).toBeGreaterThan(0);

      // The database stops while a job runs and another waits in line.
      const outageStartedAt = Date.now();
      await database.stop();

      // A request gets an answer at once (no hang): a stable code, 503 and when to try again.
      const askedAt = Date.now();
      const me = await client.request(MeDocument);
      expect(Date.now() - askedAt).toBeLessThan(15_000);
      expect(me.status).toBe(503);
      expect(me.headers.get('retry-after')).toBe('5');
      expect(errorCode(me)).toBe('DATABASE_UNAVAILABLE');
      expect(me.errors![0]!.message).toBe('The database is unavailable right now. Try again shortly.');
      expect(me.errors![0]!.extensions).toMatchObject({ retryAfterSeconds: 5, requestId: me.headers.get('x-request-id') });
      // The same over graphql-ws, and for a write: a job started now is refused, not half queued.
      expect((await socket.execute(MeDocument)).errors?.[0]?.extensions?.code).toBe('DATABASE_UNAVAILABLE');
      const refused = await client.request(StartTrainingDocument, { input: { appId: before!.app.id, configId: before!.config.id } });
      expect(errorCode(refused)).toBe('DATABASE_UNAVAILABLE');

      // Readiness says why; liveness stays up (restarting Pollen would not help).
      const ready = await fetch(`${pollen.origin}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({ status: 'unavailable', database: 'down', reason: expect.stringMatching(/^The database /) });
      const live = await fetch(`${pollen.origin}/healthz`);
      expect(live.status).toBe(200);

      // The running job goes on; the metrics it reports meanwhile wait for the database.
      const metricWaiting = () => pollen!.logs().find((l) => l.msg === 'database unavailable: will store the round metric once it is back');
      await expect.poll(metricWaiting, { timeout: 120_000, interval: 500 }).toBeDefined();
      const waited = metricWaiting()!;

      await database.restart();
      const outageEndedAt = Date.now();

      // Pollen finds the database again by itself: no restart, the same process, the data still there.
      await expect.poll(async () => (await fetch(`${pollen!.origin}/readyz`)).status, { timeout: 60_000, interval: 500 }).toBe(200);
      expect((await client.data(MeDocument)).me?.username).toBe(session.user.username);
      expect((await client.data(ProjectDocument, { id: createProject.id })).project?.name).toBe('through an outage');

      // The job that ran through the outage completes with every metric, those of the outage included.
      await runningUpdates.ended;
      expect(runningUpdates.items.at(-1)!.trainingJobUpdated.status).toBe('COMPLETED');
      const { trainingJob: ran } = await client.data(TrainingJobDocument, { id: running, last: 5_000 });
      expect(ran!.metrics.filter((m) => m.phase === 'TRAIN').map((m) => m.round)).toEqual([1, 2]);
      expect(ran!.metrics).toContainEqual(expect.objectContaining({ round: waited.round, phase: waited.phase }));
      expect(ran!.logs.some(({ at }) => Date.parse(at) > outageStartedAt && Date.parse(at) < outageEndedAt)).toBe(true);

      // The job that waited in line is not lost: it runs once its turn comes.
      const waitingUpdates = socket.subscribe(TrainingJobUpdatedDocument, { jobId: waiting });
      await waitingUpdates.ended;
      expect(waitingUpdates.items.at(-1)!.trainingJobUpdated.status).toBe('COMPLETED');
      const { project } = await client.data(ProjectJobsDocument, { id: createProject.id });
      expect(project!.trainingJobs.edges.map((e) => e.node.id).sort()).toEqual([running, waiting].sort());

      // Nothing crashed on the way: no unhandled rejection, no fatal line.
      expect(pollen.child.exitCode).toBeNull();
      expect(pollen.logs().filter((l) => (l.level as number) >= 60)).toEqual([]);
    } finally {
      await socket.client.dispose();
    }
  }, 600_000);
});
