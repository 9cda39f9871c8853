import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mongoose from 'mongoose';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedFerretDB } from '../src/db/embedded-ferretdb.js';
import { LoginDocument, MeDocument } from './generated/graphql.js';
import { connectWebSocket, errorCode, PollenProcess, signUp } from './support/testkit.js';

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
const deepQuery = 'mutation { login(input: { username: "x", password: "y" }) { user { id } } }';

describe('query limits', () => {
  it('refuse an alias flood over HTTP with a clear code, before touching the database', async () => {
    const started = performance.now();
    const result = await pollen.client().post({ query: aliasFlood(2000) });
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(result.status).toBe(400);
    expect(errorCode(result)).toBe('BAD_USER_INPUT');
    expect(result.errors![0]!.extensions).toMatchObject({ reason: 'QUERY_TOO_COSTLY' });
    expect(result.errors![0]!.message).toMatch(/costs 6000; the limit is 5000/);
  });

  it('refuse too deep a query over HTTP', async () => {
    const result = await strict.client().post({ query: deepQuery });
    expect(errorCode(result)).toBe('BAD_USER_INPUT');
    expect(result.errors![0]!.extensions).toMatchObject({ reason: 'QUERY_TOO_DEEP' });
    expect(result.errors![0]!.message).toMatch(/nested 3 levels deep; the limit is 2/);
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
        flood.client.subscribe({ query: aliasFlood(2000) }, { next: () => undefined, error: (e) => resolve(e as unknown[]), complete: () => resolve([]) });
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
