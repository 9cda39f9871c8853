import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import {
  AddProjectMemberDocument, CreateProjectDocument, CreateTrainingConfigDocument, DeleteAppDocument, DeleteProjectDocument,
  FlowerAppDocument, LeaveProjectDocument, ProjectContentsDocument, ProjectDocument, ProjectsDocument, RemoveProjectMemberDocument,
  UpdateProjectDocument, UploadAppDocument, type ProjectsQuery,
} from './generated/graphql.js';
import { flowerAppZip } from './support/fixtures.js';
import { errorCode, signUp, usePollen } from './support/testkit.js';

const pollen = usePollen();
let database: mongoose.mongo.MongoClient;

beforeAll(async () => {
  database = await new mongoose.mongo.MongoClient(inject('mongoUri')).connect();
});
afterAll(async () => {
  await database?.close();
});

const db = () => database.db(pollen.database as string);

describe('projects', () => {
  it('are created with their creator as owner, and can be renamed', async () => {
    const { client, session } = await signUp(pollen);
    const { createProject } = await client.data(CreateProjectDocument, { input: { name: '  Digits  ', description: 'MNIST, offline' } });
    expect(createProject).toMatchObject({
      name: 'Digits', description: 'MNIST, offline', myRole: 'OWNER',
      owner: { id: session.user.id }, members: [{ role: 'OWNER', user: { id: session.user.id } }],
    });
    const { updateProject } = await client.data(UpdateProjectDocument, { id: createProject.id, input: { name: 'Digits v2' } });
    expect(updateProject).toMatchObject({ name: 'Digits v2', description: 'MNIST, offline' });
  });

  it('refuse an empty or overlong name naming the field', async () => {
    const { client } = await signUp(pollen);
    for (const name of ['   ', 'x'.repeat(101)]) {
      const result = await client.request(CreateProjectDocument, { input: { name } });
      expect(result.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'name' });
    }
  });

  it('page through all of a user\'s projects with stable cursors, newest first, and only theirs', async () => {
    const { client } = await signUp(pollen);
    const { client: stranger } = await signUp(pollen);
    await stranger.data(CreateProjectDocument, { input: { name: 'not mine' } });
    const names = Array.from({ length: 7 }, (_, i) => `project ${i}`);
    for (const name of names) await client.data(CreateProjectDocument, { input: { name } });

    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 3; page += 1) {
      const { projects }: ProjectsQuery = await client.data(ProjectsDocument, { first: 3, after });
      expect(projects.totalCount).toBe(7);
      seen.push(...projects.edges.map((e) => e.node.name));
      expect(projects.pageInfo.hasNextPage).toBe(page < 2);
      after = projects.pageInfo.endCursor ?? null;
    }
    expect(seen).toEqual([...names].reverse());

    // A project created meanwhile does not shift the pages after a cursor.
    const { projects: firstPage } = await client.data(ProjectsDocument, { first: 3 });
    await client.data(CreateProjectDocument, { input: { name: 'newcomer' } });
    const { projects: secondPage } = await client.data(ProjectsDocument, { first: 3, after: firstPage.pageInfo.endCursor });
    expect(secondPage.edges.map((e) => e.node.name)).toEqual(['project 3', 'project 2', 'project 1']);
  });

  it('are searched by name, case-insensitively, with regex characters taken literally', async () => {
    const { client } = await signUp(pollen);
    for (const name of ['Breast Cancer', 'cancer screening', 'Digits', 'a.b (test)']) {
      await client.data(CreateProjectDocument, { input: { name } });
    }
    const search = async (text: string) => (await client.data(ProjectsDocument, { search: text })).projects;
    expect((await search('CANCER')).edges.map((e) => e.node.name)).toEqual(['cancer screening', 'Breast Cancer']);
    expect((await search('CANCER')).totalCount).toBe(2);
    expect((await search('.b (')).edges.map((e) => e.node.name)).toEqual(['a.b (test)']);
    expect((await search('zzz')).totalCount).toBe(0);
  });

  it('refuse page sizes outside 1 to 100 and cursors they did not make', async () => {
    const { client } = await signUp(pollen);
    expect((await client.request(ProjectsDocument, { first: 101 })).errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'first' });
    expect((await client.request(ProjectsDocument, { first: 0 })).errors![0]!.extensions).toMatchObject({ field: 'first' });
    expect((await client.request(ProjectsDocument, { after: 'bogus' })).errors![0]!.extensions).toMatchObject({ field: 'after' });
  });
});

describe('members', () => {
  it('are added by username with a role, see the project, and can have their role changed', async () => {
    const { client: owner, session } = await signUp(pollen);
    const { client: member, session: memberSession } = await signUp(pollen);
    const { createProject } = await owner.data(CreateProjectDocument, { input: { name: 'shared' } });
    const { addProjectMember } = await owner.data(AddProjectMemberDocument, {
      projectId: createProject.id, username: memberSession.user.username.toUpperCase(), role: 'VIEWER',
    });
    expect(addProjectMember.members.map((m) => [m.user.id, m.role])).toEqual([[session.user.id, 'OWNER'], [memberSession.user.id, 'VIEWER']]);
    expect((await member.data(ProjectDocument, { id: createProject.id })).project?.myRole).toBe('VIEWER');
    expect((await member.data(ProjectsDocument, {})).projects.totalCount).toBe(1);

    await owner.data(AddProjectMemberDocument, { projectId: createProject.id, username: memberSession.user.username, role: 'EDITOR' });
    expect((await member.data(ProjectDocument, { id: createProject.id })).project?.myRole).toBe('EDITOR');
  });

  it('cannot be added when the user does not exist', async () => {
    const { client } = await signUp(pollen);
    const { createProject } = await client.data(CreateProjectDocument, { input: { name: 'p' } });
    const result = await client.request(AddProjectMemberDocument, { projectId: createProject.id, username: 'no_such_user', role: 'VIEWER' });
    expect(errorCode(result)).toBe('NOT_FOUND');
  });

  it('can leave by themselves, but the last owner can neither leave nor be demoted', async () => {
    const { client: owner, session } = await signUp(pollen);
    const { client: viewer, session: viewerSession } = await signUp(pollen);
    const { createProject } = await owner.data(CreateProjectDocument, { input: { name: 'p' } });
    const projectId = createProject.id;
    await owner.data(AddProjectMemberDocument, { projectId, username: viewerSession.user.username, role: 'VIEWER' });

    expect(await viewer.data(LeaveProjectDocument, { projectId })).toEqual({ leaveProject: true });
    expect(errorCode(await viewer.request(ProjectDocument, { id: projectId }))).toBe('NOT_FOUND');

    expect(errorCode(await owner.request(LeaveProjectDocument, { projectId }))).toBe('CONFLICT');
    const removeSelf = await owner.request(RemoveProjectMemberDocument, { projectId, userId: session.user.id });
    expect(errorCode(removeSelf)).toBe('CONFLICT');
    const demote = await owner.request(AddProjectMemberDocument, { projectId, username: session.user.username, role: 'EDITOR' });
    expect(errorCode(demote)).toBe('CONFLICT');
  });

  it('keep at least one owner even when two owners remove each other at once', async () => {
    const { client: first, session: firstSession } = await signUp(pollen);
    const { client: second, session: secondSession } = await signUp(pollen);
    const { createProject } = await first.data(CreateProjectDocument, { input: { name: 'two owners' } });
    await first.data(AddProjectMemberDocument, { projectId: createProject.id, username: secondSession.user.username, role: 'OWNER' });
    const results = await Promise.all([
      first.request(RemoveProjectMemberDocument, { projectId: createProject.id, userId: secondSession.user.id }),
      second.request(RemoveProjectMemberDocument, { projectId: createProject.id, userId: firstSession.user.id }),
    ]);
    const winners = results.filter((r) => !r.errors);
    expect(winners).toHaveLength(1);
    // The loser either lost the race (CONFLICT) or was already out of the project (NOT_FOUND).
    expect(['CONFLICT', 'NOT_FOUND']).toContain(errorCode(results.find((r) => r.errors)!));
    expect(winners[0]!.data!.removeProjectMember.members.map((m) => m.role)).toEqual(['OWNER']);
  });
});

describe('deleting', () => {
  async function projectWithContents() {
    const signedUp = await signUp(pollen);
    const { createProject } = await signedUp.client.data(CreateProjectDocument, { input: { name: 'doomed' } });
    const upload = await signedUp.client.upload(UploadAppDocument, { projectId: createProject.id, file: null }, {
      file: { bytes: await flowerAppZip(), filename: 'app.zip' },
    });
    const { createTrainingConfig } = await signedUp.client.data(CreateTrainingConfigDocument, {
      input: { projectId: createProject.id, name: 'c', rounds: 3, clients: 2 },
    });
    return { ...signedUp, projectId: createProject.id, appId: upload.data!.uploadApp.id, configId: createTrainingConfig.id };
  }

  async function addJob(fixture: { projectId: string; appId: string; configId: string; session: { user: { id: string } } }, status: string) {
    const id = (value: string) => new mongoose.Types.ObjectId(value);
    await db().collection('training_jobs').insertOne({
      projectId: id(fixture.projectId), appId: id(fixture.appId), configId: id(fixture.configId),
      status, createdById: id(fixture.session.user.id), createdAt: new Date(), updatedAt: new Date(),
    });
  }

  it('a project removes its apps, their stored archives, its configs and jobs', async () => {
    const fixture = await projectWithContents();
    await addJob(fixture, 'COMPLETED');
    const archives = () => db().collection('app_archives.files').countDocuments({ 'metadata.projectId': new mongoose.Types.ObjectId(fixture.projectId) });
    expect(await archives()).toBe(1);

    expect(await fixture.client.data(DeleteProjectDocument, { id: fixture.projectId })).toEqual({ deleteProject: true });
    expect(errorCode(await fixture.client.request(ProjectDocument, { id: fixture.projectId }))).toBe('NOT_FOUND');
    expect(errorCode(await fixture.client.request(FlowerAppDocument, { id: fixture.appId }))).toBe('NOT_FOUND');
    expect(await archives()).toBe(0);
    const projectId = new mongoose.Types.ObjectId(fixture.projectId);
    expect(await db().collection('training_configs').countDocuments({ projectId })).toBe(0);
    expect(await db().collection('training_jobs').countDocuments({ projectId })).toBe(0);
  });

  it.each(['QUEUED', 'STARTING', 'RUNNING'])('a project or its app is refused while a job is %s', async (status) => {
    const fixture = await projectWithContents();
    await addJob(fixture, status);
    expect(errorCode(await fixture.client.request(DeleteProjectDocument, { id: fixture.projectId }))).toBe('CONFLICT');
    expect(errorCode(await fixture.client.request(DeleteAppDocument, { id: fixture.appId }))).toBe('CONFLICT');
    const { project } = await fixture.client.data(ProjectContentsDocument, { id: fixture.projectId });
    expect(project?.apps.totalCount).toBe(1);
  });

  it('an app removes its stored archive, while its finished jobs stay', async () => {
    const fixture = await projectWithContents();
    await addJob(fixture, 'FAILED');
    expect(await fixture.client.data(DeleteAppDocument, { id: fixture.appId })).toEqual({ deleteApp: true });
    expect(await db().collection('app_archives.files').countDocuments({ 'metadata.projectId': new mongoose.Types.ObjectId(fixture.projectId) })).toBe(0);
    expect(await db().collection('training_jobs').countDocuments({ projectId: new mongoose.Types.ObjectId(fixture.projectId) })).toBe(1);
  });
});
