import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectWebSocket, signUp, usePollen, type WsConnection } from './support/testkit.js';

/**
 * Documents an attacker sends to stall a GraphQL server: each is small (at most the 1 MB body
 * limit) and each must be refused while costing Pollen next to nothing, anonymous or signed in,
 * over HTTP and over graphql-ws.
 */
const fanOut = (levels: number, leaf: string, on = 'Query') => {
  const fragments = [`fragment F0 on ${on} { ${leaf} }`];
  for (let i = 1; i <= levels; i++) fragments.push(`fragment F${i} on ${on} { ...F${i - 1} ...F${i - 1} }`);
  return `${on === 'Query' ? '' : 'mutation '}{ ...F${levels} } ${fragments.join(' ')}`;
};
const nested = (levels: number) => `{ projects { edges { node { ${'apps { edges { node { project { '.repeat(levels)}id${' } } } }'.repeat(levels)} } } } }`;

const HOSTILE: Array<{ name: string; query: string; variables?: Record<string, unknown>; operationName?: string }> = [
  { name: 'fragments that double 27 times', query: fanOut(27, 'me { id }') },
  { name: 'fragments that double 40 times, fields first', query: `${fanOut(40, 'me { id username }').replace(/^\{ \.\.\.F40 \} /, '')} query Q { ...F40 }` },
  { name: 'fragments that double inside fields', query: (() => {
    const fragments = ['fragment G0 on Project { id }'];
    for (let i = 1; i <= 30; i++) fragments.push(`fragment G${i} on Project { apps { edges { node { project { ...G${i - 1} } } } } a${i}: apps { edges { node { project { ...G${i - 1} } } } } }`);
    return `{ projects { edges { node { ...G30 } } } } ${fragments.join(' ')}`;
  })() },
  { name: '2,100 aliases of a user', query: `{ ${Array.from({ length: 2100 }, (_, i) => `u${i}: me { id username email createdAt }`).join(' ')} }` },
  { name: '1,500 aliases', query: `{ ${Array.from({ length: 1500 }, (_, i) => `u${i}: me { id }`).join(' ')} }` },
  { name: 'one field 2,000 times', query: `{ ${'me { id } '.repeat(2000)} }` },
  { name: 'a field with a selection 400 times', query: `{ projects { ${'edges { node { id } } '.repeat(400)} } }` },
  { name: 'the same fragment pair 2,000 times', query: `{ ${'...A ...B '.repeat(2000)} } fragment A on Query { me { id } } fragment B on Query { me { username } }` },
  { name: '1,200 directives', query: `{ me ${'@include(if: true) '.repeat(1200)} { id } }` },
  { name: 'nesting 60 levels deep', query: nested(15) },
  { name: 'more tokens than the parser reads', query: `{ me { ${'id '.repeat(30_000)} } }` },
  { name: 'a fragment cycle', query: '{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }' },
  { name: '50 sign-ups in one request', query: `mutation { ${Array.from({ length: 50 }, (_, i) => `r${i}: register(input: { username: "flood${i}", email: "f${i}@example.com", password: "Pollen!2026" }) { accessToken }`).join(' ')} }` },
  { name: 'sign-ins fanned out through fragments', query: fanOut(20, 'login(input: { username: "x", password: "y" }) { accessToken }', 'Mutation') },
  { name: 'a 900 KB string', query: `{ project(id: "${'x'.repeat(900_000)}") { id } }` },
  { name: 'huge variables', query: 'query($id: ID!) { project(id: $id) { id } }', variables: { id: 'x', ...Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`v${i}`, [i, { deep: [i] }]])) } },
  { name: 'a variable with 900 KB of nested input', query: 'mutation($input: CreateProjectInput!) { createProject(input: $input) { id } }', variables: { input: { name: 'x', description: 'd', extra: Array.from({ length: 40_000 }, (_, i) => ({ i })) } } },
];

/** Codes that refuse an operation before or without running it. */
const REFUSED = new Set(['BAD_USER_INPUT', 'GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'BAD_REQUEST', 'UNAUTHENTICATED', 'NOT_FOUND']);
const CPU_BUDGET_SECONDS = 0.05;

const pollen = usePollen({ env: { MAX_CONCURRENT_JOBS: '0' } });
let token: string;
beforeAll(async () => {
  token = (await signUp(pollen)).session.accessToken;
  // Each code path is compiled once, on first use; what is measured below is what each document
  // costs an attacker who sends it again and again. Refusals are never cached.
  for (const doc of HOSTILE) await pollen.client().post({ query: doc.query, variables: doc.variables, operationName: doc.operationName });
});

/**
 * Sends a document three times, one after another, and returns the last answer with the median
 * CPU Pollen spent on one (its clock ticks every 10 ms, and a garbage collection may fall on any).
 */
async function medianCpu<R>(send: () => Promise<R>): Promise<{ result: R; cpu: number }> {
  const spent: number[] = [];
  let result!: R;
  for (let i = 0; i < 3; i += 1) {
    const before = pollen.cpuSeconds();
    result = await send();
    spent.push(pollen.cpuSeconds() - before);
  }
  return { result, cpu: spent.sort((a, b) => a - b)[1]! };
}

/** Errors, and no data but nulls. */
function nothingAnswered(result: { data?: unknown; errors?: readonly unknown[] }): boolean {
  return (result.errors?.length ?? 0) > 0 && Object.values(result.data ?? {}).every((value) => value === null);
}

/** Polls /healthz until stopped; the longest it waited for an answer. */
function watchHealth(url: string) {
  let stopped = false;
  let longestMs = 0;
  let answered = 0;
  const done = (async () => {
    while (!stopped) {
      const started = performance.now();
      const response = await fetch(url);
      expect(response.status).toBe(200);
      await response.text();
      longestMs = Math.max(longestMs, performance.now() - started);
      answered += 1;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return { stop: async () => ((stopped = true), await done, { longestMs, answered }) };
}

describe.each([
  ['anonymous', () => undefined],
  ['signed in', () => token],
])('hostile documents, %s', (_who, tokenOf) => {
  it.each(HOSTILE.map((doc) => [doc.name, doc] as const))('over HTTP: %s is refused within 50 ms of server CPU', async (_name, doc) => {
    const client = pollen.client(tokenOf());
    const health = watchHealth(`${pollen.origin}/healthz`);
    const { result, cpu } = await medianCpu(() => client.post({ query: doc.query, variables: doc.variables, operationName: doc.operationName }));
    const { longestMs, answered } = await health.stop();
    expect(nothingAnswered(result), JSON.stringify(result)).toBe(true);
    for (const error of result.errors!) expect(REFUSED, error.message).toContain(error.extensions?.code);
    expect(cpu).toBeLessThanOrEqual(CPU_BUDGET_SECONDS);
    expect(answered).toBeGreaterThan(0);
    expect(longestMs).toBeLessThan(1000);
  });

  describe('over graphql-ws', () => {
    let socket: WsConnection;
    beforeAll(() => {
      socket = connectWebSocket(pollen.wsUrl, tokenOf());
    });
    afterAll(async () => {
      await socket.client.dispose();
    });

    it.each(HOSTILE.map((doc) => [doc.name, doc] as const))('%s is refused within 50 ms of server CPU', async (_name, doc) => {
      const { result, cpu } = await medianCpu(() => new Promise<{ data?: unknown; errors?: ReadonlyArray<{ message: string; extensions?: Record<string, unknown> }> }>(
        (resolve, reject) => {
          let last: { data?: unknown; errors?: ReadonlyArray<{ message: string; extensions?: Record<string, unknown> }> } = {};
          socket.client.subscribe({ query: doc.query, variables: doc.variables, operationName: doc.operationName }, {
            next: (value) => (last = value as typeof last),
            error: (error) => (Array.isArray(error) ? resolve({ errors: error }) : reject(error)),
            complete: () => resolve(last),
          });
        }));
      expect(nothingAnswered(result), JSON.stringify(result)).toBe(true);
      for (const error of result.errors!) expect(REFUSED, error.message).toContain(error.extensions?.code);
      expect(cpu).toBeLessThanOrEqual(CPU_BUDGET_SECONDS);
    });
  });
});
