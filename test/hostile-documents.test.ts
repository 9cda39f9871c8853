import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTILE } from './support/hostile-documents.mjs';
import { connectWebSocket, signUp, usePollen, type WsConnection } from './support/testkit.js';

/**
 * Each hostile document (test/support/hostile-documents.mjs) is refused, anonymous or signed in,
 * over HTTP and over graphql-ws, with nothing answered, and Pollen answers /healthz after it. A
 * document Pollen's checks would walk in exponential time (27 or 40 doublings) never comes back,
 * so this fails by its timeout; what each refusal costs in CPU is measured by
 * bench/hostile-documents.mjs.
 */

/** Codes that refuse an operation before or without running it. */
const REFUSED = new Set(['BAD_USER_INPUT', 'GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'BAD_REQUEST', 'UNAUTHENTICATED', 'NOT_FOUND']);

const pollen = usePollen({ env: { MAX_CONCURRENT_JOBS: '0' } });
let token: string;
beforeAll(async () => {
  token = (await signUp(pollen)).session.accessToken;
});

/** Errors, and no data but nulls. */
function nothingAnswered(result: { data?: unknown; errors?: readonly unknown[] }): boolean {
  return (result.errors?.length ?? 0) > 0 && Object.values(result.data ?? {}).every((value) => value === null);
}

describe.each([
  ['anonymous', () => undefined],
  ['signed in', () => token],
])('hostile documents, %s', (_who, tokenOf) => {
  it.each(HOSTILE.map((doc) => [doc.name, doc] as const))('over HTTP: %s is refused, and the server answers on', async (_name, doc) => {
    const result = await pollen.client(tokenOf()).post({ query: doc.query, variables: doc.variables, operationName: doc.operationName });
    expect(nothingAnswered(result), JSON.stringify(result)).toBe(true);
    for (const error of result.errors!) expect(REFUSED, error.message).toContain(error.extensions?.code);
    expect((await fetch(`${pollen.origin}/healthz`)).status).toBe(200);
  });

  describe('over graphql-ws', () => {
    let socket: WsConnection;
    beforeAll(() => {
      socket = connectWebSocket(pollen.wsUrl, tokenOf());
    });
    afterAll(async () => {
      await socket.client.dispose();
    });

    it.each(HOSTILE.map((doc) => [doc.name, doc] as const))('%s is refused', async (_name, doc) => {
      const result = await new Promise<{ data?: unknown; errors?: ReadonlyArray<{ message: string; extensions?: Record<string, unknown> }> }>(
        (resolve, reject) => {
          let last: { data?: unknown; errors?: ReadonlyArray<{ message: string; extensions?: Record<string, unknown> }> } = {};
          socket.client.subscribe({ query: doc.query, variables: doc.variables, operationName: doc.operationName }, {
            next: (value) => (last = value as typeof last),
            error: (error) => (Array.isArray(error) ? resolve({ errors: error }) : reject(error)),
            complete: () => resolve(last),
          });
        });
      expect(nothingAnswered(result), JSON.stringify(result)).toBe(true);
      for (const error of result.errors!) expect(REFUSED, error.message).toContain(error.extensions?.code);
    });
  });
});
