import { describe, expect, it } from 'vitest';
import { MeDocument } from './generated/graphql.js';
import { connectWebSocket, errorCode, usePollen, type PollenProcess } from './support/testkit.js';

const pollen = usePollen();
const PASSWORD = 'Pollen!2026';

/** What a browser on Pollen's origin does: posts JSON to /auth and keeps the cookie it is given. */
class Browser {
  cookie: string | undefined;
  lastSetCookie: string | undefined;

  constructor(private readonly server: PollenProcess) {}

  async post(path: string, body?: unknown, headers: Record<string, string> = {}) {
    const response = await fetch(`${this.server.origin}${path}`, {
      method: 'POST',
      headers: {
        origin: this.server.origin,
        'sec-fetch-site': 'same-origin',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(this.cookie ? { cookie: `theme=dark; ${this.cookie}` } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    this.lastSetCookie = response.headers.getSetCookie().find((line) => line.startsWith('pollen_refresh='));
    if (this.lastSetCookie) {
      const value = this.lastSetCookie.split(';')[0]!;
      this.cookie = value === 'pollen_refresh=' ? undefined : value;
    }
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) as Record<string, any> : undefined };
  }

  signUp(username: string) {
    return this.post('/auth/sign-up', { username, email: `${username}@example.com`, password: PASSWORD });
  }
}

describe('signing in from the dashboard', () => {
  it('gives the page an access token and keeps the refresh token in an httpOnly, SameSite=Strict cookie on /auth', async () => {
    const browser = new Browser(pollen);
    const signedUp = await browser.signUp('cookie_user');
    expect(signedUp.status).toBe(200);
    expect(Object.keys(signedUp.body!).sort()).toEqual(['accessToken', 'accessTokenExpiresAt', 'user']);
    expect(signedUp.body!.user).toMatchObject({ username: 'cookie_user', email: 'cookie_user@example.com' });
    expect(signedUp.headers.get('cache-control')).toBe('no-store');
    const attributes = browser.lastSetCookie!.split(';').map((part) => part.trim().toLowerCase());
    expect(attributes).toEqual(expect.arrayContaining(['path=/auth', 'httponly', 'samesite=strict', `max-age=${30 * 86400}`]));
    expect(attributes).not.toContain('secure'); // plain HTTP outside production

    const me = await pollen.client(signedUp.body!.accessToken).data(MeDocument);
    expect(me.me!.username).toBe('cookie_user');
    // The cookie is no credential for /graphql: the API stays bearer-only.
    const withCookieOnly = await pollen.client().request(MeDocument, undefined, { cookie: browser.cookie! });
    expect(withCookieOnly.data).toEqual({ me: null });

    const signedIn = await new Browser(pollen).post('/auth/sign-in', { username: 'cookie_user@example.com', password: PASSWORD });
    expect(signedIn.status).toBe(200);
    expect(signedIn.body!.user.username).toBe('cookie_user');
  });

  it('keeps the sign-in across reloads: each refresh rotates the cookie, and a reused one ends the sign-in', async () => {
    const browser = new Browser(pollen);
    await browser.signUp('reloading_user');
    const first = browser.cookie;
    const reload = await browser.post('/auth/refresh');
    expect(reload.status).toBe(200);
    expect(reload.body!.user.username).toBe('reloading_user');
    expect(browser.cookie).not.toBe(first);
    const socket = connectWebSocket(pollen.wsUrl, reload.body!.accessToken);
    try {
      expect((await socket.execute(MeDocument)).data?.me?.username).toBe('reloading_user');

      // Someone replays the first cookie: the whole sign-in ends, the page's socket with it.
      const thief = new Browser(pollen);
      thief.cookie = first;
      const replay = await thief.post('/auth/refresh');
      expect(replay.status).toBe(401);
      expect(replay.body!.errors[0].extensions.code).toBe('UNAUTHENTICATED');
      expect(thief.lastSetCookie).toMatch(/^pollen_refresh=;/);
      expect((await socket.closed).code).toBe(4403);
      expect((await browser.post('/auth/refresh')).status).toBe(401);
    } finally {
      await socket.client.dispose();
    }
  });

  it('signs out: the sign-in ends at once and the cookie is cleared', async () => {
    const browser = new Browser(pollen);
    const { body } = await browser.signUp('leaving_user');
    const signedOut = await browser.post('/auth/sign-out');
    expect(signedOut.status).toBe(204);
    expect(browser.lastSetCookie).toMatch(/^pollen_refresh=;.*Expires=Thu, 01 Jan 1970/);
    expect(browser.cookie).toBeUndefined();
    expect(errorCode(await pollen.client(body!.accessToken).request(MeDocument))).toBe('UNAUTHENTICATED');
    // A page that opens without a cookie is simply not signed in.
    const anonymous = await browser.post('/auth/refresh');
    expect([anonymous.status, anonymous.body]).toEqual([204, undefined]);
  });

  it('answers mistakes with 4xx and a code, never 500', async () => {
    const browser = new Browser(pollen);
    const cases = [
      [await browser.post('/auth/sign-in', { username: 'nobody', password: 'Wrong!pass1' }), 401, 'UNAUTHENTICATED'],
      [await browser.post('/auth/sign-in', { username: ['x'], password: 1 }), 400, 'BAD_USER_INPUT'],
      [await browser.post('/auth/sign-up', { username: 'a', email: 'not-an-email', password: 'short' }), 400, 'BAD_USER_INPUT'],
      [await browser.post('/auth/sign-in', '{"username": '), 400, 'BAD_REQUEST'],
      [await browser.post('/auth/sign-in', { username: 'x'.repeat(5000), password: PASSWORD }), 413, 'PAYLOAD_TOO_LARGE'],
      [await browser.post('/auth/sign-in', 'username=x&password=y', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'BAD_REQUEST'],
    ] as const;
    for (const [answer, status, code] of cases) {
      expect([answer.status, answer.body!.errors[0].extensions.code]).toEqual([status, code]);
    }
    expect(cases[2][0].body!.errors[0].message).toMatch(/^username: .*; email: .*; password: /);
  });

  it('refuses requests from other origins, which SameSite alone would let through from sibling sites', async () => {
    const browser = new Browser(pollen);
    await browser.signUp('guarded_user');
    const foreign: Array<Record<string, string>> = [{ origin: 'http://evil.localhost:1234' }, { 'sec-fetch-site': 'same-site' }, { 'sec-fetch-site': 'cross-site' }];
    for (const headers of foreign) {
      const answer = await browser.post('/auth/refresh', undefined, headers);
      expect([answer.status, answer.body!.errors[0].extensions.code]).toEqual([403, 'FORBIDDEN']);
    }
    expect((await browser.post('/auth/refresh')).status).toBe(200);
  });
});

describe('the dashboard page', () => {
  it('is served at / with a Content-Security-Policy that allows no inline script or style', async () => {
    const response = await fetch(`${pollen.origin}/`, { headers: { accept: 'text/html' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const policy = Object.fromEntries(response.headers.get('content-security-policy')!.split('; ').map((directive) => {
      const [name, ...values] = directive.split(' ');
      return [name, values];
    }));
    const host = new URL(pollen.origin).host;
    expect(policy).toEqual({
      'default-src': ["'none'"], 'script-src': ["'self'"], 'style-src': ["'self'"], 'img-src': ["'self'", 'data:'],
      'connect-src': ["'self'", `ws://${host}`, `wss://${host}`], 'base-uri': ["'none'"], 'form-action': ["'none'"],
      'frame-ancestors': ["'none'"],
    });
    const html = await response.text();
    // Every script and stylesheet is a file of the bundle, loaded from this origin.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=/);
    const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((match) => match[1]!);
    expect(assets.map((asset) => asset.split('.').pop()).sort()).toEqual(['css', 'js']);
    for (const asset of assets) {
      const file = await fetch(`${pollen.origin}${asset}`);
      expect(file.status).toBe(200);
      expect(file.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    }
    expect((await fetch(`${pollen.origin}/assets/..%2Fdashboard.router.js`)).status).toBe(404);
    expect((await fetch(`${pollen.origin}/assets/missing.js`)).status).toBe(404);
  });

  it('leaves GraphiQL where it was', async () => {
    const graphiql = await fetch(pollen.url, { headers: { accept: 'text/html' } });
    expect(await graphiql.text()).toContain('<title>Pollen GraphiQL</title>');
  });
});
