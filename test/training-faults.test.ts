import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CreateProjectDocument, RoundMetricsDocument, TrainingJobDocument, TrainingJobUpdatedDocument,
} from './generated/graphql.js';
import {
  connectWebSocket, jobProcesses, localFederationsDir, PollenProcess, processesIn, processesUnder, queueJob, REPO_ROOT, signUp,
} from './support/testkit.js';

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

describe('the watchdog', () => {
  it('fails a run whose SuperNodes never all connect, and tears it down', async () => {
    const pollen = await pollenWithProject({ NODE_CONNECT_TIMEOUT: '5s' });
    const { session, client } = await signUp(pollen);
    const { createProject } = await client.data(CreateProjectDocument, { input: { name: 'waiting' } });
    // The app waits for three nodes; the federation has two.
    const jobId = await queueJob(client, createProject.id, path.join(REPO_ROOT, 'test/fixtures/apps/other-metrics-app'), 2, { 'min-nodes': 3 });
    const socket = connectWebSocket(pollen.wsUrl, session.accessToken);
    const updates = socket.subscribe(TrainingJobUpdatedDocument, { jobId });
    await updates.ended;
    await socket.client.dispose();
    const final = updates.items.at(-1)!.trainingJobUpdated;
    expect(final.status).toBe('FAILED');
    expect(final.statusReason).toMatch(/watchdog: only 2 of the 3 SuperNodes it needs connected within NODE_CONNECT_TIMEOUT \(5 s\)/);
    expect(jobProcesses(pollen.dataDir, jobId)).toEqual([]);
  }, 180_000);
});

describe('a restart of Pollen', () => {
  it('fails the job that was running (keeping its metrics), kills its Flower processes, and runs the queued one', async () => {
    const env = { JOB_LEASE: '3s', MAX_CONCURRENT_JOBS: '1' };
    const first = await pollenWithProject(env);
    const { session, client } = await signUp(first);
    const { createProject } = await client.data(CreateProjectDocument, { input: { name: 'restarts' } });
    const digits = path.join(REPO_ROOT, 'examples/digits-app');
    // On the Simulation Engine: what matters is the restart, and its rounds take a fraction of a second.
    const interrupted = await queueJob(client, createProject.id, digits, 100, undefined, { federation: 'SIMULATION' });
    const waiting = await queueJob(client, createProject.id, digits, 2, undefined, { federation: 'SIMULATION' });

    const socket = connectWebSocket(first.wsUrl, session.accessToken);
    const metrics = socket.subscribe(RoundMetricsDocument, { jobId: interrupted });
    await expect.poll(() => metrics.items.length, { timeout: 120_000, interval: 200 }).toBeGreaterThan(1);
    await first.stop('SIGKILL');
    // Without Pollen, its Flower processes stop themselves (their guard's stdin closed).
    await expect.poll(() => jobProcesses(first.dataDir, interrupted), { timeout: 15_000 }).toEqual([]);

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

describe('a Flower process that dies mid-run', () => {
  // The watchdog's bound: a run with no round finished for ROUND_TIMEOUT fails (a round takes ~15-25 s here).
  const ROUND_TIMEOUT_SECONDS = 90;
  const env = { ROUND_TIMEOUT: `${ROUND_TIMEOUT_SECONDS}s`, NODE_CONNECT_TIMEOUT: '30s' };

  it.each([
    { what: 'a SuperNode', command: 'flower-supernode', which: /partition-id=1\b/, label: 'SuperNode 1' },
    { what: 'the SuperLink', command: 'flower-superlink', which: /./, label: 'SuperLink' },
  ])('$what killed with SIGKILL fails the job with a clear reason, keeps its metrics and logs, and leaves no process',
    async ({ command, which, label }) => {
      const pollen = await pollenWithProject(env);
      const { session, client } = await signUp(pollen);
      const { createProject } = await client.data(CreateProjectDocument, { input: { name: `losing ${label}` } });
      const jobId = await queueJob(client, createProject.id, path.join(REPO_ROOT, 'examples/digits-app'), 100);
      const socket = connectWebSocket(pollen.wsUrl, session.accessToken);
      try {
        const updates = socket.subscribe(TrainingJobUpdatedDocument, { jobId });
        const metrics = socket.subscribe(RoundMetricsDocument, { jobId });
        await expect.poll(() => metrics.items.some((m) => m.roundMetrics.phase === 'TRAIN'), { timeout: 180_000, interval: 200 }).toBe(true);

        // The Flower process itself (not the guard that runs it) dies as in a crash.
        const victims = processesIn(localFederationsDir(pollen.dataDir))
          .filter(({ args }) => args.includes(`/${command} `) && !args.includes('process_guard.py') && which.test(args));
        expect(victims).toHaveLength(1);
        const seenBefore = metrics.items.map(({ roundMetrics: { round, phase } }) => ({ round, phase }));
        const killedAt = Date.now();
        process.kill(victims[0]!.pid, 'SIGKILL');

        await updates.ended;
        const final = updates.items.at(-1)!.trainingJobUpdated;
        expect(final.status).toBe('FAILED');
        expect(final.statusReason).toMatch(new RegExp(`^The ${label} process \\(${command}\\) was killed by SIGKILL at round \\d+; ` +
          'the run cannot go on without it\\.$'));
        expect(Date.parse(final.finishedAt!) - killedAt).toBeLessThan((ROUND_TIMEOUT_SECONDS + 30) * 1000);
        // Reported finished only once every process of the run is gone.
        expect(jobProcesses(pollen.dataDir, jobId)).toEqual([]);

        const { trainingJob } = await client.data(TrainingJobDocument, { id: jobId });
        expect(trainingJob!.metrics.map(({ round, phase }) => ({ round, phase }))).toEqual(expect.arrayContaining(seenBefore));
        expect(trainingJob!.logs.length).toBeGreaterThan(0);
      } finally {
        await socket.client.dispose();
      }
    }, 300_000);
});
