import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import {
  AddProjectMemberDocument, CancelTrainingDocument, CompareJobsDocument, CreateProjectDocument, CreateTrainingConfigDocument, ProjectsDocument, ProjectsOverviewDocument,
  StartTrainingDocument, TrainingJobDocument, TrainingJobUpdatedDocument, UploadAppDocument,
} from './generated/graphql.js';
import { flowerAppZip } from './support/fixtures.js';
import { MongoCommandCounter } from './support/mongo-command-counter.mjs';
import { connectWebSocket, GraphQLClient, PollenProcess, signUp } from './support/testkit.js';

let counter: MongoCommandCounter;
let pollen: PollenProcess;
let client: GraphQLClient;
const projectIds: string[] = []; // oldest first
/** Each project's jobs, newest first, and every job in the order it was queued. */
const jobsOf = new Map<string, string[]>();
const queue: string[] = [];

beforeAll(async () => {
  counter = await MongoCommandCounter.start(inject('mongoUri'));
  // No runner: every job stays QUEUED, in line.
  pollen = await PollenProcess.start({ env: { MONGODB_URI: `${counter.uri}counted`, MAX_CONCURRENT_JOBS: '0' } });
  ({ client } = await signUp(pollen));
  // 50 projects, each with its owner and three more members, all different users.
  const others = await Promise.all(Array.from({ length: 6 }, () => signUp(pollen)));
  for (let i = 0; i < 50; i += 1) {
    const { createProject } = await client.data(CreateProjectDocument, { input: { name: `project ${i}` } });
    projectIds.push(createProject.id);
    for (const [j, role] of (['VIEWER', 'EDITOR', 'OWNER'] as const).entries()) {
      await client.data(AddProjectMemberDocument, {
        projectId: createProject.id, username: others[(i + j) % others.length]!.session.user.username, role,
      });
    }
  }

  // The newest ten projects get an app and a config; the oldest of them six jobs early on, then
  // the others (but one) take turns queueing three jobs each, as teams working side by side do.
  const launchers = new Map<string, () => Promise<void>>();
  for (const projectId of projectIds.slice(40)) {
    const upload = await client.upload(UploadAppDocument, { projectId, file: null }, { file: { bytes: await flowerAppZip(), filename: 'app.zip' } });
    const { createTrainingConfig } = await client.data(CreateTrainingConfigDocument, { input: { projectId, name: 'c', rounds: 3, clients: 2 } });
    jobsOf.set(projectId, []);
    launchers.set(projectId, async () => {
      const { startTraining } = await client.data(StartTrainingDocument, {
        input: { appId: upload.data!.uploadApp.id, configId: createTrainingConfig.id },
      });
      jobsOf.get(projectId)!.unshift(startTraining.id);
      queue.push(startTraining.id);
    });
  }
  for (let i = 0; i < 6; i += 1) await launchers.get(projectIds[40]!)!();
  for (let turn = 0; turn < 3; turn += 1) {
    for (const projectId of projectIds.slice(41)) if (projectId !== projectIds[45]) await launchers.get(projectId)!();
  }
}, 300_000);
afterAll(async () => {
  await pollen?.stop();
  pollen?.removeDataDir();
  await counter?.stop();
});

describe('loading related records', () => {
  it('sends the same number of database commands for a page of 5 and a page of 50', async () => {
    const commandsFor = async (first: number) => {
      counter.take();
      const { projects } = await client.data(ProjectsDocument, { first });
      expect(projects.edges).toHaveLength(first);
      expect(projects.edges.every((e) => e.node.members.length === 4 && e.node.owner.username)).toBe(true);
      return counter.take();
    };
    const small = await commandsFor(5);
    const large = await commandsFor(50);
    expect(large).toEqual(small);
    // The sign-in's session (read by id), the page, its total (an aggregate), and one batch of users.
    expect(small.sort()).toEqual(['aggregate', 'find', 'find', 'find']);
  });

  it('shows each project with its apps, configs, newest jobs and their place in line, in as many commands for 5 projects as for 50', async () => {
    const commandsFor = async (first: number) => {
      counter.take();
      const { projects } = await client.data(ProjectsOverviewDocument, { first, jobs: 3 });
      expect(projects.edges).toHaveLength(first);
      return counter.take();
    };
    const small = await commandsFor(5);
    const large = await commandsFor(50);
    expect(large).toEqual(small);
    // The session. Projects: page and total. Users: one batch. Apps, configs and jobs: each one count
    // aggregation for all projects and one find. Queued jobs' place in line: the queue and the running count.
    expect(small.sort()).toEqual([...Array(5).fill('aggregate'), ...Array(7).fill('find')]);
  });

  // 7: more than any project has, so each shows all its jobs.
  it.each([[50, 1], [50, 3], [10, 7]])('gives each of %i projects its own page of %i newest jobs', async (first, jobs) => {
    const { projects } = await client.data(ProjectsOverviewDocument, { first, jobs });
    expect(projects.edges.map((e) => e.node.id)).toEqual([...projectIds].reverse().slice(0, first));
    for (const { node: project } of projects.edges) {
      const expected = jobsOf.get(project.id) ?? [];
      expect(project.trainingJobs.totalCount).toBe(expected.length);
      expect(project.trainingJobs.pageInfo.hasNextPage).toBe(expected.length > jobs);
      expect(project.trainingJobs.edges.map((e) => e.node.id)).toEqual(expected.slice(0, jobs));
      for (const { node: job } of project.trainingJobs.edges) {
        expect(job.status).toBe('QUEUED');
        expect(job.statusReason).toBe(`Waiting for a free runner (0 of 0 runner slots busy); position ${queue.indexOf(job.id) + 1} in line.`);
        expect(job.latestMetrics).toEqual([]);
      }
      const hasApp = jobsOf.has(project.id);
      expect([project.apps.totalCount, project.configs.totalCount]).toEqual(hasApp ? [1, 1] : [0, 0]);
      expect(project.apps.edges).toHaveLength(hasApp ? 1 : 0);
    }
  });

  it('reads a job once for many subscribers who arrive together, and each still sees it change', async () => {
    const jobId = queue.at(-1)!;
    const socket = connectWebSocket(pollen.wsUrl, client.token);
    try {
      counter.take();
      const streams = Array.from({ length: 40 }, () => socket.subscribe(TrainingJobUpdatedDocument, { jobId }));
      await vi.waitFor(() => expect(streams.every((stream) => stream.items.length === 1)).toBe(true), { timeout: 30_000 });
      // Alone, each would read the job, its project and the job again: 120 reads. How many turns of
      // the event loop the 40 messages arrive in varies; here they have taken 11 reads.
      expect(counter.take().filter((name) => name === 'find').length).toBeLessThanOrEqual(30);
      expect(new Set(streams.map((stream) => `${stream.items[0]!.trainingJobUpdated.id} ${stream.items[0]!.trainingJobUpdated.status}`)))
        .toEqual(new Set([`${jobId} QUEUED`]));

      await client.data(CancelTrainingDocument, { id: jobId });
      await Promise.all(streams.map((stream) => stream.ended));
      expect(new Set(streams.map((stream) => stream.items.at(-1)!.trainingJobUpdated.status))).toEqual(new Set(['CANCELLED']));
    } finally {
      await socket.client.dispose();
    }
  });

  it('compares 10 jobs of 100 rounds in as many database commands as 1 job', async () => {
    const jobIds = queue.slice(1, 11);
    const direct = await new mongoose.mongo.MongoClient(inject('mongoUri')).connect();
    try {
      await direct.db('counted').collection('round_metrics').insertMany(jobIds.flatMap((jobId, j) =>
        Array.from({ length: 100 }, (_, i) => i + 1).flatMap((round) => (['TRAIN', 'EVALUATE'] as const).map((phase) => ({
          jobId: new mongoose.Types.ObjectId(jobId), round, phase, recordedAt: new Date(),
          valuesJson: JSON.stringify({ loss: (j + 1) / round, accuracy: 1 - 1 / (round + 1), note: 'text is left out' }),
        })))));
    } finally {
      await direct.close();
    }
    const commandsFor = async (ids: string[]) => {
      counter.take();
      const { trainingJobs } = await client.data(CompareJobsDocument, { ids, phase: 'EVALUATE' });
      expect(trainingJobs.map((job) => job!.id)).toEqual(ids);
      for (const [j, job] of trainingJobs.entries()) {
        expect(job!.metricSeries.map((series) => series.name)).toEqual(['accuracy', 'loss']);
        const loss = job!.metricSeries.find((series) => series.name === 'loss')!;
        expect(loss.points).toHaveLength(100);
        expect(loss.points[3]).toEqual({ round: 4, value: (jobIds.indexOf(job!.id) + 1) / 4 });
        expect(j === 0 || job!.metricSeries[0]!.points[0]!.round === 1).toBe(true);
      }
      return counter.take();
    };
    const one = await commandsFor(jobIds.slice(0, 1));
    const ten = await commandsFor(jobIds);
    expect(ten).toEqual(one);
  });

  it('works out the latest metrics of jobs stored before they were kept on the job, when Pollen starts', async () => {
    const jobId = queue[0]!;
    const direct = await new mongoose.mongo.MongoClient(inject('mongoUri')).connect();
    try {
      const db = direct.db('counted');
      const metric = (round: number, phase: string) => ({
        jobId: new mongoose.Types.ObjectId(jobId), round, phase, valuesJson: JSON.stringify({ loss: 1 / (round + 1) }),
        recordedAt: new Date(Date.UTC(2026, 0, 1, 0, round, phase.length)),
      });
      await db.collection('round_metrics').insertMany([metric(0, 'SERVER_EVALUATE'), metric(1, 'TRAIN'), metric(1, 'SERVER_EVALUATE'),
        metric(2, 'TRAIN'), metric(2, 'EVALUATE')]);
      await db.collection('training_jobs').updateOne({ _id: new mongoose.Types.ObjectId(jobId) }, { $unset: { latestMetricsJson: '' } });
    } finally {
      await direct.close();
    }
    await pollen.stop();
    pollen = await PollenProcess.start({ dataDir: pollen.dataDir, env: { MONGODB_URI: `${counter.uri}counted`, MAX_CONCURRENT_JOBS: '0' } });
    const { trainingJob } = await new GraphQLClient(pollen.url, client.token).data(TrainingJobDocument, { id: jobId });
    expect(trainingJob!.latestMetrics.map((m) => [m.phase, m.round, m.values])).toEqual([
      ['TRAIN', 2, { loss: 1 / 3 }], ['EVALUATE', 2, { loss: 1 / 3 }], ['SERVER_EVALUATE', 1, { loss: 1 / 2 }],
    ]);
  });
});
