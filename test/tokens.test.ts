import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MeDocument } from './generated/graphql.js';
import { connectWebSocket, errorCode, PollenProcess, signUp } from './support/testkit.js';

/** Signs a JWT by hand, so that tests can forge what a client never gets from Pollen. */
function forgeJwt(header: object, claims: object, secret = 'not-the-server-secret'): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part(header)}.${part(claims)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

const now = () => Math.floor(Date.now() / 1000);
let pollen: PollenProcess;
// Access tokens from this instance expire after two seconds.
let shortLived: PollenProcess;

beforeAll(async () => {
  [pollen, shortLived] = await Promise.all([
    PollenProcess.start(),
    PollenProcess.start({ env: { ACCESS_TOKEN_TTL: '2s' } }),
  ]);
});
afterAll(async () => {
  for (const p of [pollen, shortLived]) {
    await p?.stop();
    p?.removeDataDir();
  }
});

describe('access tokens over HTTP', () => {
  it('are JWTs (HS256) with sub, iat, exp and jti', async () => {
    const { session } = await signUp(pollen);
    const [header, claims] = session.accessToken.split('.').slice(0, 2)
      .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString()));
    expect(header.alg).toBe('HS256');
    expect(claims).toMatchObject({ sub: session.user.id, iat: expect.any(Number), exp: expect.any(Number), jti: expect.any(String) });
    expect(claims.exp - claims.iat).toBe(15 * 60);
  });

  it.each([
    ['signed with another secret', () => forgeJwt({ alg: 'HS256', typ: 'JWT' }, { sub: '0'.repeat(24), iat: now(), exp: now() + 600 })],
    ['with alg none', () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(`{"sub":"x","exp":${now() + 600}}`).toString('base64url')}.`],
    ['that is garbage', () => 'garbage'],
  ])('refuses a token %s as UNAUTHENTICATED (401)', async (_name, token) => {
    const result = await pollen.client(token()).request(MeDocument);
    expect(result.status).toBe(401);
    expect(errorCode(result)).toBe('UNAUTHENTICATED');
    expect(result.errors![0]!.message).toMatch(/invalid/);
  });

  it('refuses an expired token as UNAUTHENTICATED, saying to refresh', async () => {
    const { client } = await signUp(shortLived);
    expect((await client.data(MeDocument)).me).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const result = await client.request(MeDocument);
    expect(errorCode(result)).toBe('UNAUTHENTICATED');
    expect(result.errors![0]!.message).toMatch(/expired.*refreshToken/);
  });
});

describe('access tokens over graphql-ws', () => {
  it('authenticate the connection through connectionParams', async () => {
    const { session } = await signUp(pollen);
    const socket = connectWebSocket(pollen.wsUrl, session.accessToken);
    try {
      expect((await socket.execute(MeDocument)).data?.me?.id).toBe(session.user.id);
    } finally {
      await socket.client.dispose();
    }
  });

  it('allow anonymous connections, which see no user', async () => {
    const socket = connectWebSocket(pollen.wsUrl);
    try {
      expect((await socket.execute(MeDocument)).data).toEqual({ me: null });
    } finally {
      await socket.client.dispose();
    }
  });

  it.each([
    ['forged', () => forgeJwt({ alg: 'HS256' }, { sub: '0'.repeat(24), exp: now() + 600 })],
    ['expired', () => forgeJwt({ alg: 'HS256' }, { sub: '0'.repeat(24), exp: now() - 1 })],
  ])('close the socket with 4403 when the token is %s', async (_name, token) => {
    const socket = connectWebSocket(pollen.wsUrl, token());
    await expect(socket.execute(MeDocument)).rejects.toBeDefined();
    expect((await socket.closed).code).toBe(4403);
  });

  it('are checked for expiry again at each subscribe', async () => {
    const { session } = await signUp(shortLived);
    const socket = connectWebSocket(shortLived.wsUrl, session.accessToken);
    expect((await socket.execute(MeDocument)).data?.me?.id).toBe(session.user.id);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await expect(socket.execute(MeDocument)).rejects.toBeDefined();
    expect(await socket.closed).toMatchObject({ code: 4403, reason: expect.stringMatching(/expired/) });
  });
});
