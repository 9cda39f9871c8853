import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mongoose from 'mongoose';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedFerretDB } from '../src/db/embedded-ferretdb.js';
import { parse } from 'graphql';
import {
  CreateProjectDocument, CreateTrainingConfigDocument, LoginDocument, MeDocument, RegisterNodeDocument,
} from './generated/graphql.js';
import { connectWebSocket, errorCode, PollenProcess, signUp, usePollen } from './support/testkit.js';

let pollen: PollenProcess;
// Limits small enough to reach with today's schema.
let strict: PollenProcess;

beforeAll(async () => {
  [pollen, strict] = await Promise.all([
    PollenProcess.start(),
    PollenProcess.start({ env: { QUERY_MAX_DEPTH: '2', QUERY_MAX_COST: '20' } }),
  ]);
});
afterAll(async () => {
  for (const p of [pollen, strict]) {
    await p?.stop();
    p?.removeDataDir();
  }
});

const aliasFlood = (count: number) => `{ ${Array.from({ length: count }, (_, i) => `a${i}: me { id username }`).join(' ')} }`;
/** Few fields, many nodes: 100 projects with 100 jobs each. */
const costlyPages = '{ projects(first: 100) { edges { node { trainingJobs(first: 100) { edges { node { id status } } } } } } }';
const deepQuery = 'mutation { login(input: { username: "x", password: "y" }) { user { id } } }';

describe('query limits', () => {
  it('refuse a query that asks for too much, or through too many aliases, over HTTP with a clear code', async () => {
    const costly = await pollen.client().post({ query: costlyPages });
    expect(costly.status).toBe(400);
    expect(errorCode(costly)).toBe('BAD_USER_INPUT');
    expect(costly.errors![0]!.extensions).toMatchObject({ reason: 'QUERY_TOO_COSTLY' });
    expect(costly.errors![0]!.message).toMatch(/^The query costs \d+; the limit is 5000\./);
    const aliases = await pollen.client().post({ query: aliasFlood(200) });
    expect(aliases.status).toBe(400);
    expect(aliases.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'TOO_MANY_ALIASES' });
  });

  it('refuse too deep a query over HTTP', async () => {
    const result = await strict.client().post({ query: deepQuery });
    expect(errorCode(result)).toBe('BAD_USER_INPUT');
    expect(result.errors![0]!.extensions).toMatchObject({ reason: 'QUERY_TOO_DEEP' });
    expect(result.errors![0]!.message).toBe('Query depth limit of 2 exceeded, found 3.');
  });

  it('count depth through fragments', async () => {
    const result = await strict.client().post({
      query: 'mutation { login(input: { username: "x", password: "y" }) { ...P } } fragment P on AuthPayload { user { id } }',
    });
    expect(result.errors![0]!.extensions).toMatchObject({ reason: 'QUERY_TOO_DEEP' });
  });

  it('let a query within the limits through', async () => {
    expect((await strict.client().post({ query: '{ me { id } }' })).data).toEqual({ me: null });
  });

  it('judge the same query again for each set of variables', async () => {
    const { client } = await signUp(pollen);
    const query = 'query($projects: Int, $jobs: Int) { projects(first: $projects) { edges { node { trainingJobs(first: $jobs) { edges { node { id } } } } } } }';
    // The same text, remembered after its first use: each page size gets its own verdict.
    for (const round of [1, 2]) {
      const small = await client.post({ query, variables: { projects: 1, jobs: 100 } });
      expect(small.errors, `round ${round}`).toBeUndefined();
      const large = await client.post({ query, variables: { projects: 50, jobs: 100 } });
      expect(large.errors![0]!.extensions, `round ${round}`).toMatchObject({ reason: 'QUERY_TOO_COSTLY' });
    }
  });

  it('apply on graphql-ws too, and the socket stays usable', async () => {
    const flood = connectWebSocket(pollen.wsUrl);
    const deep = connectWebSocket(strict.wsUrl);
    try {
      const floodResult = await new Promise<readonly unknown[]>((resolve) => {
        flood.client.subscribe({ query: costlyPages }, { next: () => undefined, error: (e) => resolve(e as unknown[]), complete: () => resolve([]) });
      });
      expect(floodResult).toMatchObject([{ extensions: { code: 'BAD_USER_INPUT', reason: 'QUERY_TOO_COSTLY' } }]);
      const deepResult = await new Promise<readonly unknown[]>((resolve) => {
        deep.client.subscribe({ query: deepQuery }, { next: () => undefined, error: (e) => resolve(e as unknown[]), complete: () => resolve([]) });
      });
      expect(deepResult).toMatchObject([{ extensions: { code: 'BAD_USER_INPUT', reason: 'QUERY_TOO_DEEP' } }]);
      expect((await flood.execute(MeDocument)).data).toEqual({ me: null });
    } finally {
      await flood.client.dispose();
      await deep.client.dispose();
    }
  });
});

describe('malformed and unsafe requests', () => {
  const post = (body: string, headers: Record<string, string>) =>
    fetch(pollen.url, { method: 'POST', headers, body });

  it('answer broken JSON with 400 and a JSON error', async () => {
    const response = await post('{"query": ', { 'content-type': 'application/json' });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ errors: [{ extensions: { code: 'BAD_REQUEST' } }] });
  });

  it('answer a body over the JSON limit with 413', async () => {
    const response = await post(JSON.stringify({ query: `{ me { id } }${' '.repeat(1_100_000)}` }), { 'content-type': 'application/json' });
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ errors: [{ extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });
  });

  it('answer a syntax error with 400 GRAPHQL_PARSE_FAILED', async () => {
    const result = await pollen.client().post({ query: '{ me { ' });
    expect(result.status).toBe(400);
    expect(errorCode(result)).toBe('GRAPHQL_PARSE_FAILED');
  });

  it('block simple (CSRF-able) requests: text/plain POSTs and GETs without a preflight header', async () => {
    expect((await post('{"query":"{ me { id } }"}', { 'content-type': 'text/plain' })).status).toBe(400);
    const get = await fetch(`${pollen.url}?query=${encodeURIComponent('{ me { id } }')}`, { headers: { accept: 'application/json' } });
    expect(get.status).toBe(400);
    expect(await get.text()).toMatch(/Cross-Site Request Forgery/);
    const preflighted = await fetch(`${pollen.url}?query=${encodeURIComponent('{ me { id } }')}`, {
      headers: { accept: 'application/json', 'apollo-require-preflight': 'true' },
    });
    expect(await preflighted.json()).toEqual({ data: { me: null } });
  });

  it('refuse multipart uploads without the preflight header before reading them, and more than one file', async () => {
    const form = () => {
      const body = new FormData();
      body.set('operations', JSON.stringify({ query: 'mutation ($a: Upload, $b: Upload) { logout(refreshToken: "x") }', variables: { a: null, b: null } }));
      body.set('map', JSON.stringify({ 0: ['variables.a'], 1: ['variables.b'] }));
      body.set('0', new Blob(['one']), 'one.zip');
      body.set('1', new Blob(['two']), 'two.zip');
      return body;
    };
    expect((await fetch(pollen.url, { method: 'POST', body: form() })).status).toBe(400);
    const twoFiles = await fetch(pollen.url, { method: 'POST', body: form(), headers: { 'apollo-require-preflight': 'true' } });
    expect(twoFiles.status).toBeGreaterThanOrEqual(400);
    expect(twoFiles.status).toBeLessThan(500);
  });

  it('answer unknown paths with 404', async () => {
    expect((await fetch(`${pollen.origin}/nothing-here`)).status).toBe(404);
  });
});

describe('request ids and logs', () => {
  it('give each request an id, in the response header, in error extensions and in every log line', async () => {
    const result = await pollen.client().request(LoginDocument, { input: { username: 'nobody_here', password: 'Wrong!pass1' } },
      { 'x-request-id': 'trace-me-123' });
    expect(result.headers.get('x-request-id')).toBe('trace-me-123');
    expect(result.errors![0]!.extensions!.requestId).toBe('trace-me-123');

    const generated = await pollen.client().post({ query: '{ me { ' });
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(generated.errors![0]!.extensions!.requestId).toBe(generated.headers.get('x-request-id'));

    await expect.poll(() => pollen.logs().filter((l) => l.requestId === 'trace-me-123').length).toBeGreaterThan(0);
    const requestLines = pollen.logs().filter((l) => l.msg === 'request');
    expect(requestLines.length).toBeGreaterThan(0);
    expect(requestLines.every((l) => typeof l.requestId === 'string')).toBe(true);
  });

  it('never log passwords or tokens', async () => {
    const { session, password } = await signUp(pollen);
    await pollen.client().request(LoginDocument, { input: { username: session.user.username, password } });
    const everything = pollen.output.join('\n');
    expect(everything).not.toContain(password);
    expect(everything).not.toContain(session.refreshToken);
    expect(everything).not.toContain(session.accessToken);
  });
});

describe('health and readiness', () => {
  it('report the process up and the database reachable', async () => {
    expect(await (await fetch(`${pollen.origin}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${pollen.origin}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready' });
  });
});

describe('in production, when something breaks', () => {
  it('shows clients no stack, only a code and a request id, and reports the database down on /readyz', async () => {
    const storeDir = mkdtempSync(path.join(tmpdir(), 'pollen-doomed-db-'));
    const database = await startEmbeddedFerretDB(storeDir, pino({ level: 'silent' }));
    const production = await PollenProcess.start({
      env: { NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40), MONGODB_URI: `${database.uri}pollen` },
    });
    const direct = await new mongoose.mongo.MongoClient(database.uri).connect();
    try {
      const { client, session } = await signUp(production);
      // A bug's worth of bad data: a stored date that is not one.
      await direct.db('pollen').collection('users').updateOne(
        { _id: new mongoose.Types.ObjectId(session.user.id) }, { $set: { createdAt: 'not a date' } });
      const broken = await client.request(MeDocument);
      expect(errorCode(broken)).toBe('INTERNAL_SERVER_ERROR');
      expect(broken.errors![0]!.message).toBe('Internal server error');
      expect(broken.errors![0]!.extensions!.requestId).toEqual(expect.any(String));
      expect(JSON.stringify(broken)).not.toMatch(/stacktrace|at .*\.js|not a date/);
      // ... while the log keeps the stack for whoever operates Pollen.
      await expect.poll(() => production.logs().some((l) => l.msg === 'unexpected error' &&
        JSON.stringify(l.err).includes('stack') && l.requestId === broken.errors![0]!.extensions!.requestId)).toBe(true);
      await direct.close();

      await database.stop();
      const ready = await fetch(`${production.origin}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ status: 'unavailable', database: 'down', reason: expect.any(String) });
      const down = await client.request(MeDocument);
      expect(down.status).toBe(503);
      expect(errorCode(down)).toBe('DATABASE_UNAVAILABLE');
      expect(JSON.stringify(down)).not.toMatch(/stacktrace|at .*\.js|Mongo|127\.0\.0\.1/);
      await expect.poll(() => production.logs().some((l) => l.msg === 'database unavailable' &&
        JSON.stringify(l.err).includes('stack') && l.requestId === down.errors![0]!.extensions!.requestId)).toBe(true);
    } finally {
      await direct.close();
      await production.stop();
      production.removeDataDir();
      await database.stop();
      rmSync(storeDir, { recursive: true, force: true });
    }
  });
});

describe('in production, the schema stays private', () => {
  const production = usePollen({ env: { NODE_ENV: 'production', JWT_SECRET: 'y'.repeat(40) } });

  it('refuses introspection and names no field in errors, over HTTP and graphql-ws alike, logging no error', async () => {
    const socket = connectWebSocket(production.wsUrl);
    try {
      for (const send of [(query: string) => production.client().post({ query }), (query: string) => socket.execute(parse(query))]) {
        const introspection = await send('{ __type(name: "Mutation") { name fields { name } } }');
        expect(introspection.data ?? null).toBeNull();
        expect(introspection.errors![0]!.extensions!.code).toBe('GRAPHQL_VALIDATION_FAILED');
        const typo = await send('{ mee { id } }');
        expect(typo.errors![0]!.extensions!.code).toBe('GRAPHQL_VALIDATION_FAILED');
        expect(typo.errors![0]!.message).toBe('Cannot query field "mee" on type "Query".');
        const badEnum = await send('mutation { addProjectMember(projectId: "0", username: "x", role: VIEWR) { id } }');
        expect(JSON.stringify(badEnum.errors)).not.toMatch(/VIEWER|Did you mean/);
      }
      expect(production.logs().filter((line) => Number(line.level) >= 50)).toEqual([]);
    } finally {
      await socket.client.dispose();
    }
  });
});

describe('sign-ins, sign-ups and refreshes', () => {
  const limited = usePollen({ env: { SIGN_IN_RATE_LIMIT: '5' } });

  it('run one per request, however many aliases ask', async () => {
    const flood = Array.from({ length: 3 }, (_, i) =>
      `r${i}: register(input: { username: "alias_${i}", email: "alias_${i}@example.com", password: "Pollen!2026" }) { accessToken }`);
    const result = await limited.client().post({ query: `mutation { ${flood.join(' ')} }` });
    expect(result.status).toBe(400);
    expect(result.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'ONE_SIGN_IN_PER_REQUEST' });
    const signIn = await limited.client().request(LoginDocument, { input: { username: 'alias_0', password: 'Pollen!2026' } });
    expect(errorCode(signIn)).toBe('UNAUTHENTICATED');
  });

  it('count against a limit per client address', async () => {
    const answers = [];
    for (let i = 0; i < 6; i += 1) {
      answers.push(await limited.client().request(LoginDocument, { input: { username: `nobody_${i}`, password: 'Wrong!pass1' } }));
    }
    // One was spent by the test above; four more fail as wrong, then the limit speaks.
    expect(answers.slice(0, 4).map(errorCode)).toEqual(Array(4).fill('UNAUTHENTICATED'));
    expect(errorCode(answers[4]!)).toBe('RATE_LIMITED');
    expect(answers[4]!.errors![0]!.extensions!.retryAfterSeconds).toBeGreaterThan(0);
    expect(answers[4]!.errors![0]!.message).toMatch(/try again in \d+ s/);
  });
});

describe('client mistakes are never internal errors', () => {
  const multipart = (boundary: string, parts: string[], end = `--${boundary}--\r\n`) => parts
    .map((part) => `--${boundary}\r\n${part}\r\n`).join('') + end;
  const field = (name: string, value: string) => `Content-Disposition: form-data; name="${name}"\r\n\r\n${value}`;
  const file = (name: string, content: string) =>
    `Content-Disposition: form-data; name="${name}"; filename="app.zip"\r\nContent-Type: application/zip\r\n\r\n${content}`;

  it.each([
    ['multipart that ends before its closing boundary', (projectId: string) => multipart('b', [
      field('operations', JSON.stringify({ query: 'mutation($p: ID!, $f: Upload!) { uploadApp(projectId: $p, file: $f) { id } }', variables: { p: projectId, f: null } })),
      field('map', JSON.stringify({ 0: ['variables.f'] })),
      file('0', 'PK\u0003\u0004 and then nothing'),
    ], '')],
    ['a map that points at a file that is not sent', (projectId: string) => multipart('b', [
      field('operations', JSON.stringify({ query: 'mutation($p: ID!, $f: Upload!) { uploadApp(projectId: $p, file: $f) { id } }', variables: { p: projectId, f: null } })),
      field('map', JSON.stringify({ 0: ['variables.f'] })),
    ])],
  ])('%s gets a 4xx answer', async (_name, body) => {
    const { client, session } = await signUp(pollen);
    const projectId = (await client.data(CreateProjectDocument, { input: { name: 'uploads' } })).createProject.id;
    const response = await fetch(pollen.url, {
      method: 'POST', body: body(projectId),
      headers: { 'content-type': 'multipart/form-data; boundary=b', 'apollo-require-preflight': 'true', authorization: `Bearer ${session.accessToken}` },
    });
    const answer = await response.json() as { errors?: Array<{ extensions?: { code?: string } }> };
    expect(answer.errors?.[0]?.extensions?.code).not.toBe('INTERNAL_SERVER_ERROR');
    expect(response.status === 200 ? answer.errors?.[0]?.extensions?.code : response.status).toSatisfy(
      (outcome: unknown) => outcome === 'BAD_USER_INPUT' || (typeof outcome === 'number' && outcome >= 400 && outcome < 500));
  });

  it('an Upload variable given a string, and a subscription sent over HTTP, are refused with 400', async () => {
    const { client } = await signUp(pollen);
    const projectId = (await client.data(CreateProjectDocument, { input: { name: 'strings' } })).createProject.id;
    const notAFile = await client.post({ query: 'mutation($p: ID!, $f: Upload!) { uploadApp(projectId: $p, file: $f) { id } }', variables: { p: projectId, f: 'x' } });
    expect(notAFile.status).toBe(400);
    expect(errorCode(notAFile)).toBe('BAD_USER_INPUT');
    const subscription = await client.post({ query: `subscription { nodeStatusChanged(projectId: "${projectId}") { id } }` });
    expect(subscription.status).toBe(400);
    expect(errorCode(subscription)).toBe('BAD_REQUEST');
    expect(subscription.errors![0]!.message).toMatch(/graphql-ws/);
    expect(pollen.logs().filter((line) => Number(line.level) >= 50)).toEqual([]);
  });
});

describe('stored names and texts', () => {
  it('are NFC, and refuse control characters, bidi controls and names with nothing visible', async () => {
    const { client } = await signUp(pollen);
    const create = (name: string, description?: string) => client.request(CreateProjectDocument, { input: { name, description } });
    expect((await client.data(CreateProjectDocument, { input: { name: 'Cafe\u0301', description: 'line one\r\nline two\ttabbed' } })).createProject)
      .toMatchObject({ name: 'Caf\u00e9', description: 'line one\r\nline two\ttabbed' });
    for (const [name, description] of [['nul\u0000name'], ['esc\u001b[31m'], ['admin\u202egnp.exe'], ['\u200b\u3164\u2060'], ['ok', 'bell\u0007']]) {
      const refused = await create(name!, description);
      expect(errorCode(refused), JSON.stringify(name)).toBe('BAD_USER_INPUT');
      expect(refused.errors![0]!.extensions!.field).toBe(description ? 'description' : 'name');
    }
    const projectId = (await client.data(CreateProjectDocument, { input: { name: 'configs' } })).createProject.id;
    const config = (input: Record<string, unknown>) => client.request(CreateTrainingConfigDocument,
      { input: { projectId, name: 'c', rounds: 1, clients: 2, ...input } });
    expect(errorCode(await config({ name: 'tab\u0009name' }))).toBe('BAD_USER_INPUT');
    const huge = await config({ runConfig: { note: 'x'.repeat(800 * 1024) } });
    expect(errorCode(huge)).toBe('BAD_USER_INPUT');
    expect(huge.errors![0]!.message).toMatch(/runConfig: must be at most 16 KB/);
    expect(errorCode(await config({ runConfig: { note: 'a\u0000b' } }))).toBe('BAD_USER_INPUT');
    expect(errorCode(await client.request(RegisterNodeDocument, { input: { projectId, name: 'edge\u0000', host: '127.0.0.1', sshUser: 'u', sshPort: 9 } })))
      .toBe('BAD_USER_INPUT');
  });

  it('email addresses are private: members see each other without them', async () => {
    const owner = await signUp(pollen);
    const member = await signUp(pollen);
    const projectId = (await owner.client.data(CreateProjectDocument, { input: { name: 'private emails' } })).createProject.id;
    const added = await owner.client.post<{ addProjectMember: { members: Array<{ user: { id: string; email: string | null } }> } }>({
      query: 'mutation($p: ID!, $u: String!) { addProjectMember(projectId: $p, username: $u, role: VIEWER) { members { user { id email } } } }',
      variables: { p: projectId, u: member.session.user.username },
    });
    expect(added.data!.addProjectMember.members).toEqual([
      { user: { id: owner.session.user.id, email: owner.session.user.email } },
      { user: { id: member.session.user.id, email: null } },
    ]);
    expect((await member.client.data(MeDocument)).me?.email).toBe(member.session.user.email);
  });
});
