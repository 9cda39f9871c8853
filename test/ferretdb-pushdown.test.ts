import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OwnFerretDB } from './support/own-ferretdb.js';

// Pollen's FerretDB patch (scripts/ferretdb/README.md) gives filters, sorts, limits and counts to
// SQLite on key indexes. Each query here runs on two FerretDBs holding the same documents: one
// with the patch's pushdown, one with --disable-pushdown (FerretDB evaluates everything itself,
// as the reference). The answers must be the same, and explain must show what SQLite did.

const { ObjectId } = mongoose.mongo;
type Doc = mongoose.mongo.Document;
type Filter = mongoose.mongo.Filter<Doc>;
type Sort = Record<string, 1 | -1>;

const DB = 'pushdown';
const projects = [new ObjectId(), new ObjectId(), new ObjectId()];
const STATUSES = ['QUEUED', 'RUNNING', 'COMPLETED', 'FAILED'];
const START = Date.UTC(2026, 0, 1);

/** Jobs and metrics shaped like Pollen's, with values that make the order of types matter. */
const users = [new ObjectId(), new ObjectId(), new ObjectId(), new ObjectId()];

function seedDocuments(): { jobs: Doc[]; metrics: Doc[]; projects: Doc[] } {
  const jobs: Doc[] = [];
  const metrics: Doc[] = [];
  // Members as Pollen keeps them (an array of documents), one as a lone document, some missing.
  const projectDocs: Doc[] = Array.from({ length: 30 }, (_, i) => ({
    _id: new ObjectId(), createdAt: new Date(START + (i % 10) * 60_000), name: `project ${i}`,
    ...(i % 9 === 8 ? {} : i % 7 === 6 ? { members: { userId: users[i % 4], role: 'OWNER' } } : {
      members: users.filter((_, u) => (i + u) % 3 !== 0).map((userId, u) => ({ userId, role: u ? 'VIEWER' : 'OWNER' })),
    }),
  }));
  for (let i = 0; i < 120; i++) {
    const _id = new ObjectId();
    jobs.push({
      _id, projectId: projects[i % 3], status: STATUSES[i % 4], createdAt: new Date(START + Math.floor(i / 2) * 60_000),
      // int, double and long in one field; some missing, some null
      ...(i % 7 === 0 ? {} : { currentRound: i % 5 === 0 ? null : i % 2 ? i % 11 : (i % 11) + 0.5 }),
      name: ['alpha', 'Beta', 'gamma', 'é-accent', ''][i % 5], lease: i % 6 === 0 ? { owner: 'x', expiresAt: new Date(START) } : null,
      finished: i % 3 === 0,
    });
    for (let round = 0; round <= 4; round++) {
      for (const phase of round === 0 ? ['SERVER_EVALUATE'] : ['TRAIN', 'EVALUATE', 'SERVER_EVALUATE']) {
        metrics.push({ _id: new ObjectId(), jobId: _id, round, phase, recordedAt: new Date(START + i * 60_000 + round * 1000) });
      }
    }
  }
  return { jobs, metrics, projects: projectDocs };
}

const INDEXES: Record<string, Sort[]> = {
  jobs: [{ projectId: 1, createdAt: -1 }, { status: 1, createdAt: -1 }, { currentRound: 1 }, { name: 1 }, { 'lease.expiresAt': 1 }],
  metrics: [{ jobId: 1, round: 1, phase: 1 }],
  projects: [{ 'members.userId': 1, createdAt: -1 }],
};

interface Case {
  name: string;
  collection: 'jobs' | 'metrics' | 'projects';
  /** Built once the documents exist. */
  filter: () => Filter;
  sort?: Sort;
  limit?: number;
  skip?: number;
  /** What explain must say; `index` is the key index (or _id index) SQLite must use. */
  expect: { filter: boolean; sort: boolean; limit: boolean; index?: string };
}

let reference: OwnFerretDB;
let pushed: OwnFerretDB;
let referenceClient: mongoose.mongo.MongoClient;
let pushedClient: mongoose.mongo.MongoClient;
let seeded: { jobs: Doc[]; metrics: Doc[]; projects: Doc[] };

beforeAll(async () => {
  [reference, pushed] = await Promise.all([OwnFerretDB.start({ disablePushdown: true }), OwnFerretDB.start()]);
  referenceClient = await new mongoose.mongo.MongoClient(reference.uri).connect();
  pushedClient = await new mongoose.mongo.MongoClient(pushed.uri).connect();
  seeded = seedDocuments();
  for (const client of [referenceClient, pushedClient]) {
    for (const [name, docs] of Object.entries(seeded)) {
      const collection = client.db(DB).collection(name);
      for (const key of INDEXES[name]!) await collection.createIndex(key);
      await collection.insertMany(docs.map((doc) => ({ ...doc })));
    }
  }
});

afterAll(async () => {
  await Promise.all([referenceClient?.close(), pushedClient?.close()]);
  await Promise.all([reference?.remove(), pushed?.remove()]);
});

function run(client: mongoose.mongo.MongoClient, c: Pick<Case, 'collection' | 'filter' | 'sort' | 'limit' | 'skip'>) {
  let cursor = client.db(DB).collection(c.collection).find(c.filter());
  if (c.sort) cursor = cursor.sort(c.sort);
  if (c.skip) cursor = cursor.skip(c.skip);
  if (c.limit) cursor = cursor.limit(c.limit);
  return cursor;
}

/** Sorted answers in their order; the others by _id (their order is unspecified). */
async function answer(client: mongoose.mongo.MongoClient, c: Case): Promise<Doc[]> {
  const docs = await run(client, c).toArray();
  return c.sort ? docs : docs.sort((a, b) => String(a._id).localeCompare(String(b._id)));
}

const project = projects[1]!;
const cursorAt = new Date(START + 30 * 60_000);
const someJob = () => seeded.jobs[17]!._id as InstanceType<typeof ObjectId>;

const cases: Case[] = [
  {
    name: 'a page of a project\'s jobs, newest first (the issue\'s read)', collection: 'jobs',
    filter: () => ({ projectId: project }), sort: { createdAt: -1, _id: -1 }, limit: 21,
    expect: { filter: true, sort: true, limit: true, index: 'projectId_1_createdAt_-1' },
  },
  {
    name: 'the pages of several projects at once, with a status (findPages)', collection: 'jobs',
    filter: () => ({ projectId: { $in: projects }, status: 'COMPLETED' }), sort: { createdAt: -1, _id: -1 }, limit: 10,
    expect: { filter: true, sort: true, limit: true },
  },
  {
    name: 'the next page, after a cursor ($and of $or with ranges on dates and ObjectIds)', collection: 'jobs',
    filter: () => ({ $and: [{ projectId: project }, { $or: [{ createdAt: { $lt: cursorAt } }, { createdAt: cursorAt, _id: { $lt: someJob() } }] }] }),
    sort: { createdAt: -1, _id: -1 }, limit: 7,
    expect: { filter: true, sort: true, limit: true, index: 'projectId_1_createdAt_-1' },
  },
  {
    name: 'one job\'s metrics from a round, in round order', collection: 'metrics',
    filter: () => ({ jobId: someJob(), round: { $gte: 2 } }), sort: { round: 1, phase: 1 },
    expect: { filter: true, sort: true, limit: false, index: 'jobId_1_round_1_phase_1' },
  },
  {
    name: 'the queue, oldest first', collection: 'jobs',
    filter: () => ({ status: 'QUEUED' }), sort: { createdAt: 1, _id: 1 }, limit: 20,
    expect: { filter: true, sort: true, limit: true, index: 'status_1_createdAt_-1' },
  },
  {
    name: 'numbers of three types compared by value, missing and null apart', collection: 'jobs',
    filter: () => ({ currentRound: { $gt: 3, $lte: 8.5 } }), sort: { currentRound: -1, _id: 1 },
    expect: { filter: true, sort: true, limit: false, index: 'currentRound_1' },
  },
  {
    name: 'null matches null and missing', collection: 'jobs',
    filter: () => ({ currentRound: null }), expect: { filter: true, sort: false, limit: false },
  },
  {
    name: 'sort over null, missing and numbers, with skip', collection: 'jobs',
    filter: () => ({}), sort: { currentRound: 1, _id: 1 }, skip: 5, limit: 30,
    expect: { filter: false, sort: true, limit: true, index: 'currentRound_1' },
  },
  {
    name: 'strings by their UTF-8 bytes, $ne and $nin', collection: 'jobs',
    filter: () => ({ name: { $ne: 'gamma', $nin: ['Beta'] } }), sort: { name: 1, _id: 1 }, limit: 50,
    expect: { filter: true, sort: true, limit: true },
  },
  {
    name: 'string ranges only match strings', collection: 'jobs',
    filter: () => ({ name: { $gte: 'alpha' } }), sort: { name: -1, _id: -1 },
    expect: { filter: true, sort: true, limit: false },
  },
  {
    name: 'an untranslatable condition ($regex) leaves a superset to FerretDB, and no limit', collection: 'jobs',
    filter: () => ({ projectId: project, name: { $regex: '^a' } }), sort: { createdAt: -1, _id: -1 }, limit: 3,
    expect: { filter: true, sort: true, limit: false },
  },
  {
    name: 'a dotted path stays with FerretDB ($or of it)', collection: 'jobs',
    filter: () => ({ status: 'RUNNING', $or: [{ lease: null }, { 'lease.expiresAt': { $lt: new Date() } }] }),
    expect: { filter: true, sort: false, limit: false },
  },
  {
    name: 'a member\'s projects, newest first (a path into an array of documents, or a document)', collection: 'projects',
    filter: () => ({ 'members.userId': users[1] }), sort: { createdAt: -1, _id: -1 }, limit: 6,
    expect: { filter: true, sort: true, limit: true },
  },
  {
    name: 'a member\'s projects by name ($regex is left to FerretDB)', collection: 'projects',
    filter: () => ({ 'members.userId': { $eq: users[2] }, name: { $regex: '1' } }), sort: { createdAt: -1, _id: -1 }, limit: 6,
    expect: { filter: true, sort: true, limit: false },
  },
  {
    name: '_id equality, on the _id index', collection: 'jobs',
    filter: () => ({ _id: someJob() }), limit: 1, expect: { filter: true, sort: false, limit: false, index: '_id_' },
  },
  {
    name: '_id in a list, on the _id index', collection: 'jobs',
    filter: () => ({ _id: { $in: [0, 5, 9].map((i) => seeded.jobs[i]!._id) } }), expect: { filter: true, sort: false, limit: false, index: '_id_' },
  },
  {
    name: '_id with another condition (a conditional update\'s filter)', collection: 'jobs',
    filter: () => ({ _id: someJob(), status: 'RUNNING' }), expect: { filter: true, sort: false, limit: false },
  },
];

describe('FerretDB pushdown (Pollen\'s patch)', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s: same answer, and explain shows the pushdown', async (_name, c) => {
    const [want, got] = await Promise.all([answer(referenceClient, c), answer(pushedClient, c)]);
    expect(want.length).toBeGreaterThan(0);
    expect(got).toEqual(want);

    // FerretDB 1.24's explain refuses a skip (it wants a long, drivers send an int): explained without.
    const explain = await run(pushedClient, { ...c, skip: undefined }).explain() as Doc;
    const plan = JSON.stringify(explain.queryPlanner);
    expect({ filter: explain.filterPushdown, sort: explain.sortPushdown, limit: explain.limitPushdown }, plan)
      .toEqual({ filter: c.expect.filter, sort: c.expect.sort, limit: c.expect.limit });
    if (c.expect.index === '_id_') expect(plan).toMatch(/SEARCH \S+ USING INDEX \S+__id_ /);
    else if (c.expect.index) expect(plan).toMatch(new RegExp(`(SEARCH|SCAN) \\S+ USING INDEX \\S+\\$key\\$${c.expect.index}(?![\\w-])`));
  });

  it('counts (countDocuments, and counts per group as findPages sends them) equal the reference', async () => {
    const count = async (client: mongoose.mongo.MongoClient) => {
      const jobs = client.db(DB).collection('jobs');
      return {
        project: await jobs.countDocuments({ projectId: project }),
        status: await jobs.countDocuments({ projectId: project, status: 'FAILED' }),
        none: await jobs.countDocuments({ projectId: new ObjectId() }),
        all: await jobs.countDocuments({}),
        groups: (await jobs.aggregate([
          { $match: { projectId: { $in: projects } } }, { $group: { _id: '$projectId', count: { $sum: 1 } } },
        ]).toArray()).sort((a, b) => String(a._id).localeCompare(String(b._id))),
        byStatus: (await jobs.aggregate([{ $match: {} }, { $group: { _id: '$status', n: { $sum: 1 } } }]).toArray())
          .sort((a, b) => String(a._id).localeCompare(String(b._id))),
        member: await client.db(DB).collection('projects').countDocuments({ 'members.userId': users[3] }),
        // numbers keep their type only in FerretDB's own $group: left to it
        byRound: (await jobs.aggregate([{ $match: {} }, { $group: { _id: '$currentRound', n: { $sum: 1 } } }]).toArray())
          .sort((a, b) => String(a._id).localeCompare(String(b._id))),
      };
    };
    const [want, got] = await Promise.all([count(referenceClient), count(pushedClient)]);
    expect(want.project).toBe(40);
    expect(got).toEqual(want);
  });

  it('an array in a keyed field turns the pushdown off, and the answers stay right', async () => {
    const arrayDoc = { _id: new ObjectId(), projectId: [project, projects[0]], status: 'FAILED', createdAt: new Date(START) };
    for (const client of [referenceClient, pushedClient]) await client.db(DB).collection('jobs').insertOne({ ...arrayDoc });
    const c: Case = {
      name: 'array', collection: 'jobs', filter: () => ({ projectId: project }), sort: { createdAt: -1, _id: -1 }, limit: 50,
      expect: { filter: false, sort: false, limit: false },
    };
    const [want, got] = await Promise.all([answer(referenceClient, c), answer(pushedClient, c)]);
    expect(want.some((doc) => Array.isArray(doc.projectId))).toBe(true);
    expect(got).toEqual(want);
    const explain = await run(pushedClient, c).explain() as Doc;
    expect([explain.filterPushdown, explain.sortPushdown, explain.limitPushdown]).toEqual([false, false, false]);
    const counted = async (client: mongoose.mongo.MongoClient) => client.db(DB).collection('jobs').countDocuments({ projectId: project });
    expect(await counted(pushedClient)).toBe(await counted(referenceClient));
  });

  it('a path whose documents hold an array turns its pushdown off, and the answers stay right', async () => {
    const odd = { _id: new ObjectId(), createdAt: new Date(START), members: [{ userId: [users[0], users[1]], role: 'OWNER' }] };
    for (const client of [referenceClient, pushedClient]) await client.db(DB).collection('projects').insertOne({ ...odd });
    const c: Case = {
      name: 'path', collection: 'projects', filter: () => ({ 'members.userId': users[1] }), sort: { createdAt: -1, _id: -1 }, limit: 50,
      expect: { filter: false, sort: false, limit: false },
    };
    const [want, got] = await Promise.all([answer(referenceClient, c), answer(pushedClient, c)]);
    expect(want.some((doc) => doc._id.equals(odd._id))).toBe(true);
    expect(got).toEqual(want);
    const explain = await run(pushedClient, c).explain() as Doc;
    expect([explain.filterPushdown, explain.sortPushdown, explain.limitPushdown]).toEqual([false, false, false]);
  });
});
