import express, { Router, type NextFunction, type Request, type Response } from 'express';
import { badUserInput, ErrorCode, forbidden } from '../../errors.js';
import { clientAddress, rejectInvalidUtf8 } from '../../http/request-context.js';
import type { AuthPayload } from './auth-payload.model.js';
import type { AuthService } from './auth.service.js';

/**
 * Sign-in for the dashboard, a browser on Pollen's own origin. The refresh token never reaches
 * the page's JavaScript: it travels in an httpOnly, SameSite=Strict cookie scoped to /auth, so
 * /graphql never receives it and never accepts a cookie as a credential. The page gets only the
 * access token, which it keeps in memory. Other clients keep using the GraphQL mutations.
 *
 *   POST /auth/sign-up  { username, email, password }  -> 200 session, cookie set
 *   POST /auth/sign-in  { username, password }         -> 200 session, cookie set
 *   POST /auth/refresh                                 -> 200 session (rotated cookie), 204 without a cookie
 *   POST /auth/sign-out                                -> 204, sign-in ended, cookie cleared
 */
export const REFRESH_COOKIE = 'pollen_refresh';
const COOKIE_PATH = '/auth';
// Three short strings; anything longer is refused before it is parsed.
const MAX_BODY = '4kb';

export interface BrowserSessionOptions {
  refreshTokenTtlSeconds: number;
  /** Send the cookie over HTTPS only (production, behind TLS). */
  secureCookie: boolean;
}

/** What the page receives: never the refresh token. */
export interface BrowserSession {
  accessToken: string;
  accessTokenExpiresAt: string;
  user: { id: string; username: string; email: string };
}

export function browserSessionRouter(auth: AuthService, options: BrowserSessionOptions): Router {
  const router = Router();
  const json = express.json({ limit: MAX_BODY, verify: rejectInvalidUtf8 });
  const cookieOptions = { httpOnly: true, sameSite: 'strict', secure: options.secureCookie, path: COOKIE_PATH } as const;
  const answer = (res: Response, payload: AuthPayload) => {
    res.cookie(REFRESH_COOKIE, payload.refreshToken, { ...cookieOptions, maxAge: options.refreshTokenTtlSeconds * 1000 });
    const session: BrowserSession = {
      accessToken: payload.accessToken,
      accessTokenExpiresAt: payload.accessTokenExpiresAt.toISOString(),
      user: { id: payload.user._id.toHexString(), username: payload.user.username, email: payload.user.email },
    };
    res.set('Cache-Control', 'no-store').json(session);
  };

  router.post('/auth/sign-up', sameOrigin, requireJson, json, async (req, res) => {
    const input = stringFields(req.body, ['username', 'email', 'password']);
    answer(res, await auth.register(input, clientAddress(req)));
  });

  router.post('/auth/sign-in', sameOrigin, requireJson, json, async (req, res) => {
    const input = stringFields(req.body, ['username', 'password']);
    answer(res, await auth.login(input, clientAddress(req)));
  });

  router.post('/auth/refresh', sameOrigin, async (req, res) => {
    const refreshToken = cookieValue(req.get('cookie'), REFRESH_COOKIE);
    if (!refreshToken) {
      res.status(204).set('Cache-Control', 'no-store').end();
      return;
    }
    try {
      answer(res, await auth.refresh(refreshToken, clientAddress(req)));
    } catch (error) {
      // A token that no longer works is worth nothing to keep.
      if (isUnauthenticated(error)) res.clearCookie(REFRESH_COOKIE, cookieOptions);
      throw error;
    }
  });

  router.post('/auth/sign-out', sameOrigin, async (req, res) => {
    const refreshToken = cookieValue(req.get('cookie'), REFRESH_COOKIE);
    if (refreshToken) await auth.logout(refreshToken);
    res.clearCookie(REFRESH_COOKIE, cookieOptions).status(204).end();
  });

  return router;
}

/**
 * Only the page's own origin may use these routes. SameSite=Strict already keeps the cookie off
 * cross-site requests; this also refuses sibling sites (same site, other origin) and pages that
 * post here without reading the answer. Clients that are not browsers send neither header.
 */
function sameOrigin(req: Request, _res: Response, next: NextFunction): void {
  const site = req.get('sec-fetch-site');
  const origin = req.get('origin');
  if ((site && site !== 'same-origin' && site !== 'none') || (origin && originHost(origin) !== req.get('host'))) {
    throw forbidden('Sign in from Pollen\'s own pages: this request comes from another origin.');
  }
  next();
}

function originHost(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

/** A form on another site cannot send JSON without a CORS preflight, which Pollen does not grant here. */
function requireJson(req: Request, _res: Response, next: NextFunction): void {
  if (!req.is('application/json')) throw Object.assign(new Error('Send the fields as JSON (Content-Type: application/json).'), { status: 415 });
  next();
}

function stringFields<K extends string>(body: unknown, names: readonly K[]): Record<K, string> {
  const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const violations = names.filter((name) => typeof fields[name] !== 'string').map((field) => ({ field, message: 'must be a string' }));
  if (violations.length > 0) throw badUserInput(violations);
  return Object.fromEntries(names.map((name) => [name, fields[name]])) as Record<K, string>;
}

/** One cookie's value from a Cookie header, in one pass over it. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const pair of (header ?? '').split(';')) {
    const separator = pair.indexOf('=');
    if (separator > 0 && pair.slice(0, separator).trim() === name) return pair.slice(separator + 1).trim() || undefined;
  }
  return undefined;
}

function isUnauthenticated(error: unknown): boolean {
  return (error as { extensions?: { code?: unknown } })?.extensions?.code === ErrorCode.UNAUTHENTICATED;
}
