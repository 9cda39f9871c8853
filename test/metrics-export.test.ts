import path from 'node:path';
import mongoose from 'mongoose';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { AddProjectMemberDocument, CreateProjectDocument } from './generated/graphql.js';
import { queueJob, REPO_ROOT, signUp, usePollen } from './support/testkit.js';

// No runner: the job stays queued, and its metrics are written as a run would have stored them.
const pollen = usePollen({ env: { MAX_CONCURRENT_JOBS: '0' } });
let owner: Awaited<ReturnType<typeof signUp>>;
let projectId: string;
let jobId: string;

/** What Pollen stored for three rounds of an app whose metric names and values a spreadsheet would misread. */
const RECORDED: Array<[number, string, Record<string, unknown>]> = [
  [0, 'SERVER_EVALUATE', { test_loss: 2.3, test_acc: 0.1 }],
  [1, 'TRAIN', { train_loss: 2.15, 'loss, smoothed': 2.2, '=HYPERLINK("x")': 1 }],
  [1, 'EVALUATE', { eval_loss: 1.99, converged: false, note: '-1+1' }],
  [1, 'SERVER_EVALUATE', { test_loss: 1.98, test_acc: 0.83 }],
  [2, 'TRAIN', { train_loss: 1.86, 'loss, smoothed': 2.0 }],
];

beforeAll(async () => {
  owner = await signUp(pollen, 'export_owner');
  projectId = (await owner.client.data(CreateProjectDocument, { input: { name: 'Exports' } })).createProject.id;
  jobId = await queueJob(owner.client, projectId, path.join(REPO_ROOT, 'examples/digits-app'), 2);
  const direct = await new mongoose.mongo.MongoClient(inject('mongoUri')).connect();
  try {
    await direct.db(pollen.database as string).collection('round_metrics').insertMany(RECORDED.map(([round, phase, values], i) => ({
      jobId: new mongoose.Types.ObjectId(jobId), round, phase, valuesJson: JSON.stringify(values),
      recordedAt: new Date(Date.UTC(2026, 11, 5, 12, 0, i)),
    })).reverse());
  } finally {
    await direct.close();
  }
});

const get = (file: string, token?: string) =>
  fetch(`${pollen.origin}/jobs/${jobId}/${file}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

describe('exporting a run\'s metrics', () => {
  it('gives a CSV with one row per round and phase and one column per metric, safe to open in a spreadsheet', async () => {
    const response = await get('metrics.csv', owner.session.accessToken);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/csv; charset=utf-8; header=present');
    expect(response.headers.get('content-disposition')).toBe(`attachment; filename="job-${jobId}-metrics.csv"`);
    expect(await response.text()).toBe([
      `round,phase,recorded_at,"'=HYPERLINK(""x"")",converged,eval_loss,"loss, smoothed",note,test_acc,test_loss,train_loss`,
      '0,SERVER_EVALUATE,2026-12-05T12:00:00.000Z,,,,,,0.1,2.3,',
      '1,TRAIN,2026-12-05T12:00:01.000Z,1,,,2.2,,,,2.15',
      "1,EVALUATE,2026-12-05T12:00:02.000Z,,false,1.99,,'-1+1,,,",
      '1,SERVER_EVALUATE,2026-12-05T12:00:03.000Z,,,,,,0.83,1.98,',
      '2,TRAIN,2026-12-05T12:00:04.000Z,,,,2,,,,1.86',
      '',
    ].join('\r\n'));
  });

  it('gives the same as JSON, values as they were reported', async () => {
    const response = await get('metrics.json', owner.session.accessToken);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const body = await response.json() as { jobId: string; metrics: Array<{ round: number; phase: string; values: unknown }> };
    expect(body.jobId).toBe(jobId);
    expect(body.metrics.map(({ round, phase, values }) => [round, phase, values])).toEqual(RECORDED);
  });

  it('lets whoever may read the run download it, and nobody else', async () => {
    const viewer = await signUp(pollen, 'export_viewer');
    const outsider = await signUp(pollen, 'export_outsider');
    await owner.client.data(AddProjectMemberDocument, { projectId, username: 'export_viewer', role: 'VIEWER' });
    expect((await get('metrics.csv', viewer.session.accessToken)).status).toBe(200);
    const answers = [
      [await get('metrics.csv', outsider.session.accessToken), 404, 'NOT_FOUND'],
      [await get('metrics.json'), 401, 'UNAUTHENTICATED'],
      [await get('metrics.csv', 'not-a-token'), 401, 'UNAUTHENTICATED'],
      [await fetch(`${pollen.origin}/jobs/not-an-id/metrics.csv`, { headers: { authorization: `Bearer ${owner.session.accessToken}` } }), 400, 'BAD_USER_INPUT'],
      [await get('metrics.xlsx', owner.session.accessToken), 404, 'NOT_FOUND'],
    ] as const;
    for (const [response, status, code] of answers) {
      expect([response.status, ((await response.json()) as { errors: Array<{ extensions: { code: string } }> }).errors[0]!.extensions.code])
        .toEqual([status, code]);
    }
  });
});
