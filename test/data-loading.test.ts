import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AddProjectMemberDocument, CreateProjectDocument, ProjectsDocument } from './generated/graphql.js';
import { MongoCommandCounter } from './support/mongo-command-counter.js';
import { GraphQLClient, PollenProcess, signUp } from './support/testkit.js';

let counter: MongoCommandCounter;
let pollen: PollenProcess;
let client: GraphQLClient;

beforeAll(async () => {
  counter = await MongoCommandCounter.start(inject('mongoUri'));
  pollen = await PollenProcess.start({ env: { MONGODB_URI: `${counter.uri}counted` } });
  ({ client } = await signUp(pollen));
  // 50 projects, each with its owner and three more members, all different users.
  const others = await Promise.all(Array.from({ length: 6 }, () => signUp(pollen)));
  for (let i = 0; i < 50; i += 1) {
    const { createProject } = await client.data(CreateProjectDocument, { input: { name: `project ${i}` } });
    for (const [j, role] of (['VIEWER', 'EDITOR', 'OWNER'] as const).entries()) {
      await client.data(AddProjectMemberDocument, {
        projectId: createProject.id, username: others[(i + j) % others.length]!.session.user.username, role,
      });
    }
  }
});
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
    // The page, its total (an aggregate), and one batch of users; the viewer comes from the token.
    expect(small.sort()).toEqual(['aggregate', 'find', 'find']);
  });
});
