import { beforeAll, describe, expect, it } from 'vitest';
import {
  AddProjectMemberDocument, CreateProjectDocument, CreateTrainingConfigDocument, DeleteAppDocument, DeleteProjectDocument,
  FlowerAppDocument, ProjectContentsDocument, ProjectDocument, RemoveProjectMemberDocument, TrainingConfigDocument,
  UpdateProjectDocument, UploadAppDocument, type ProjectRole,
} from './generated/graphql.js';
import { flowerAppZip } from './support/fixtures.js';
import { GraphQLClient, signUp, usePollen } from './support/testkit.js';

type Caller = 'anonymous' | 'outsider' | 'viewer' | 'editor' | 'owner';
const CALLERS: Caller[] = ['anonymous', 'outsider', 'viewer', 'editor', 'owner'];
/** What a caller gets: 'ok', or the error code. */
type Outcome = 'ok' | 'UNAUTHENTICATED' | 'NOT_FOUND' | 'FORBIDDEN';

const pollen = usePollen();
const clients = {} as Record<Caller, GraphQLClient>;
const users = {} as Record<Caller, { id: string; username: string }>;

/** A project where each caller has the role its name says. */
async function projectWithMembers(): Promise<string> {
  const { createProject } = await clients.owner.data(CreateProjectDocument, { input: { name: `roles ${Math.random()}` } });
  for (const [caller, role] of [['viewer', 'VIEWER'], ['editor', 'EDITOR']] as const) {
    await clients.owner.data(AddProjectMemberDocument, { projectId: createProject.id, username: users[caller].username, role });
  }
  return createProject.id;
}

let projectId: string;
async function uploadedApp(project = projectId, version = String(Math.random())): Promise<string> {
  const result = await clients.owner.upload(UploadAppDocument, { projectId: project, file: null }, {
    file: { bytes: await flowerAppZip({ version }), filename: 'app.zip' },
  });
  return result.data!.uploadApp.id;
}

interface Operation {
  name: string;
  allowed: Record<Caller, Outcome>;
  /** Runs the operation as `client`; resolves to 'ok' or the error code. */
  run(client: GraphQLClient): Promise<Outcome>;
}

const outcome = (result: { errors?: ReadonlyArray<{ extensions?: Record<string, unknown> }> }): Outcome =>
  result.errors ? (result.errors[0]!.extensions!.code as Outcome) : 'ok';

const readers: Record<Caller, Outcome> = { anonymous: 'UNAUTHENTICATED', outsider: 'NOT_FOUND', viewer: 'ok', editor: 'ok', owner: 'ok' };
const editors: Record<Caller, Outcome> = { ...readers, viewer: 'FORBIDDEN' };
const owners: Record<Caller, Outcome> = { ...editors, editor: 'FORBIDDEN' };

const operations: Operation[] = [
  { name: 'project', allowed: readers, run: async (c) => outcome(await c.request(ProjectDocument, { id: projectId })) },
  { name: 'project apps and configs', allowed: readers, run: async (c) => outcome(await c.request(ProjectContentsDocument, { id: projectId })) },
  { name: 'flowerApp', allowed: readers, run: async (c) => outcome(await c.request(FlowerAppDocument, { id: await uploadedApp(projectId, 'shared') })) },
  {
    name: 'trainingConfig',
    allowed: readers,
    run: async (c) => {
      const { createTrainingConfig } = await clients.owner.data(CreateTrainingConfigDocument, {
        input: { projectId, name: 'read-me', rounds: 3, clients: 2 },
      });
      return outcome(await c.request(TrainingConfigDocument, { id: createTrainingConfig.id }));
    },
  },
  {
    name: 'GET /apps/:id/archive',
    allowed: readers,
    run: async (c) => {
      const response = await fetch(`${pollen.origin}/apps/${await uploadedApp(projectId, 'shared')}/archive`, {
        headers: c.token ? { authorization: `Bearer ${c.token}` } : {},
      });
      const statuses: Record<number, Outcome> = { 200: 'ok', 401: 'UNAUTHENTICATED', 403: 'FORBIDDEN', 404: 'NOT_FOUND' };
      return statuses[response.status]!;
    },
  },
  {
    name: 'uploadApp',
    allowed: editors,
    run: async (c) => outcome(await c.upload(UploadAppDocument, { projectId, file: null }, {
      file: { bytes: await flowerAppZip({ version: String(Math.random()) }), filename: 'app.zip' },
    })),
  },
  { name: 'deleteApp', allowed: editors, run: async (c) => outcome(await c.request(DeleteAppDocument, { id: await uploadedApp() })) },
  {
    name: 'createTrainingConfig',
    allowed: editors,
    run: async (c) => outcome(await c.request(CreateTrainingConfigDocument, { input: { projectId, name: 'cfg', rounds: 3, clients: 2 } })),
  },
  { name: 'updateProject', allowed: owners, run: async (c) => outcome(await c.request(UpdateProjectDocument, { id: projectId, input: { description: 'changed' } })) },
  {
    name: 'addProjectMember',
    allowed: owners,
    run: async (c) => outcome(await c.request(AddProjectMemberDocument, { projectId, username: users.viewer.username, role: 'VIEWER' as ProjectRole })),
  },
  {
    name: 'removeProjectMember (someone else)',
    allowed: owners,
    run: async (c) => {
      const project = await projectWithMembers();
      return outcome(await c.request(RemoveProjectMemberDocument, { projectId: project, userId: users.viewer.id }));
    },
  },
  {
    name: 'deleteProject',
    allowed: owners,
    run: async (c) => outcome(await c.request(DeleteProjectDocument, { id: await projectWithMembers() })),
  },
];

beforeAll(async () => {
  clients.anonymous = pollen.client();
  for (const caller of CALLERS.slice(1)) {
    const { session, client } = await signUp(pollen);
    clients[caller] = client;
    users[caller] = session.user;
  }
  projectId = await projectWithMembers();
});

describe('the role matrix', () => {
  const rows = operations.flatMap((operation) => CALLERS.map((caller) => [operation.name, caller, operation] as const));
  it.each(rows)('%s as %s', async (_name, caller, operation) => {
    expect(await operation.run(clients[caller])).toBe(operation.allowed[caller]);
  });
});

describe('ids', () => {
  it('are BAD_USER_INPUT when malformed, naming the argument', async () => {
    const result = await clients.owner.request(ProjectDocument, { id: 'not-an-id' });
    expect(result.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'projectId' });
    const app = await clients.owner.request(FlowerAppDocument, { id: '123' });
    expect(app.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'id' });
  });

  it('of things that do not exist are NOT_FOUND, exactly as for outsiders', async () => {
    const missing = await clients.owner.request(ProjectDocument, { id: '0'.repeat(24) });
    const hidden = await clients.outsider.request(ProjectDocument, { id: projectId });
    expect(missing.errors![0]!.message).toBe(hidden.errors![0]!.message);
    expect(missing.errors![0]!.extensions!.code).toBe('NOT_FOUND');
  });
});
