import { beforeAll, describe, expect, it } from 'vitest';
import { CreateProjectDocument, CreateTrainingConfigDocument, ProjectContentsDocument, TrainingConfigDocument } from './generated/graphql.js';
import { errorCode, GraphQLClient, signUp, usePollen } from './support/testkit.js';

const pollen = usePollen();
let client: GraphQLClient;
let projectId: string;

beforeAll(async () => {
  ({ client } = await signUp(pollen));
  projectId = (await client.data(CreateProjectDocument, { input: { name: 'configs' } })).createProject.id;
});

describe('training configurations', () => {
  it('are saved with the original design\'s defaults', async () => {
    const { createTrainingConfig } = await client.data(CreateTrainingConfigDocument, {
      input: { projectId, name: 'baseline', rounds: 5, clients: 3, modelType: 'mlp', runConfig: { 'local-epochs': 2, 'train.shuffle': true } },
    });
    expect(createTrainingConfig).toMatchObject({
      name: 'baseline', version: 1, rounds: 5, clients: 3, modelType: 'mlp', learningRate: 0.01, batchSize: 32,
      runConfig: { 'local-epochs': 2, 'train.shuffle': true }, project: { id: projectId },
    });
    const { trainingConfig } = await client.data(TrainingConfigDocument, { id: createTrainingConfig.id });
    expect(trainingConfig).toEqual(createTrainingConfig);
  });

  it('save a new version under an existing name, leaving the old one as it was', async () => {
    const save = (rounds: number) => client.data(CreateTrainingConfigDocument, { input: { projectId, name: 'versioned', rounds, clients: 2 } });
    const first = (await save(3)).createTrainingConfig;
    const second = (await save(4)).createTrainingConfig;
    expect([first.version, second.version]).toEqual([1, 2]);
    expect((await client.data(TrainingConfigDocument, { id: first.id })).trainingConfig?.rounds).toBe(3);
  });

  it('never give two concurrent saves the same version', async () => {
    const saves = await Promise.all(Array.from({ length: 6 }, (_, i) => client.request(CreateTrainingConfigDocument, {
      input: { projectId, name: 'raced', rounds: i + 1, clients: 2 },
    })));
    expect(saves.map((s) => s.errors)).toEqual(Array(6).fill(undefined));
    expect(saves.map((s) => s.data!.createTrainingConfig.version).sort()).toEqual([1, 2, 3, 4, 5, 6]);
  });

  const base = { name: 'bad', rounds: 3, clients: 2 };
  it.each([
    ['rounds', { rounds: 0 }], ['rounds', { rounds: 101 }],
    ['clients', { clients: 1 }], ['clients', { clients: 1001 }],
    ['learningRate', { learningRate: 0.0009 }], ['learningRate', { learningRate: 1.01 }],
    ['batchSize', { batchSize: 0 }], ['batchSize', { batchSize: 513 }],
    ['name', { name: ' ' }],
    ['runConfig', { runConfig: { nested: { no: 1 } } }], ['runConfig', { runConfig: { list: [1, 2] } }],
    ['runConfig', { runConfig: { nothing: null } }],
  ])('refuse a bad %s as BAD_USER_INPUT naming it', async (field, change) => {
    const result = await client.request(CreateTrainingConfigDocument, { input: { projectId, ...base, ...change } });
    expect(errorCode(result)).toBe('BAD_USER_INPUT');
    expect(result.errors![0]!.extensions!.field).toBe(field);
  });

  it('accept the edges of every range', async () => {
    const edges = [
      { rounds: 1, clients: 2, learningRate: 0.001, batchSize: 1 },
      { rounds: 100, clients: 1000, learningRate: 1.0, batchSize: 512 },
    ];
    for (const edge of edges) {
      expect((await client.request(CreateTrainingConfigDocument, { input: { projectId, name: 'edges', ...edge } })).errors).toBeUndefined();
    }
  });

  it('are listed on their project, newest first', async () => {
    const { createProject } = await client.data(CreateProjectDocument, { input: { name: 'listing' } });
    for (const name of ['a', 'b', 'c']) {
      await client.data(CreateTrainingConfigDocument, { input: { projectId: createProject.id, name, rounds: 1, clients: 2 } });
    }
    const { project } = await client.data(ProjectContentsDocument, { id: createProject.id, first: 2 });
    expect(project?.configs.totalCount).toBe(3);
    expect(project?.configs.edges.map((e) => e.node.name)).toEqual(['c', 'b']);
    expect(project?.configs.pageInfo.hasNextPage).toBe(true);
  });
});
