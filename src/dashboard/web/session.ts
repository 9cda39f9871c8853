import { useSyncExternalStore } from 'react';

/**
 * The browser's sign-in. The access token lives in this module's memory only; the refresh token
 * is an httpOnly cookie that Pollen sets on /auth and that no script can read (see
 * src/modules/auth/browser-session.router.ts). A reload restores the session through /auth/refresh.
 */
export interface Session {
  accessToken: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  user: { id: string; username: string; email: string };
}

/** A refusal from Pollen, with its stable code (UNAUTHENTICATED, BAD_USER_INPUT, RATE_LIMITED, ...). */
export class PollenError extends Error {
  constructor(message: string, readonly code: string, readonly reason?: string) {
    super(message);
  }
}

// Refresh this long before the access token expires, so no request carries one that just did.
const REFRESH_MARGIN_MS = 60_000;

let current: Session | null = null;
let refreshing: Promise<Session | null> | undefined;
const listeners = new Set<() => void>();

function setSession(session: Session | null): void {
  current = session;
  for (const listener of listeners) listener();
}

export function useSession(): Session | null {
  return useSyncExternalStore((listener) => {
    listeners.add(listener);
    return () => listeners.delete(listener);
  }, () => current);
}

async function post(path: string, body?: Record<string, string>): Promise<Session | null> {
  const response = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (response.status === 204) return null;
  const answer = await response.json() as {
    accessToken?: string; accessTokenExpiresAt?: string; user?: Session['user'];
    errors?: Array<{ message: string; extensions?: { code?: string; reason?: string } }>;
  };
  if (!response.ok || !answer.accessToken) {
    const error = answer.errors?.[0];
    throw new PollenError(error?.message ?? `Pollen answered ${response.status}.`, error?.extensions?.code ?? 'UNKNOWN');
  }
  return { accessToken: answer.accessToken, expiresAt: Date.parse(answer.accessTokenExpiresAt!), user: answer.user! };
}

export async function signIn(username: string, password: string): Promise<void> {
  setSession(await post('/auth/sign-in', { username, password }));
}

export async function signUp(username: string, email: string, password: string): Promise<void> {
  setSession(await post('/auth/sign-up', { username, email, password }));
}

export async function signOut(): Promise<void> {
  try {
    await post('/auth/sign-out');
  } finally {
    setSession(null);
  }
}

/**
 * Exchanges the cookie for a new access token (and a rotated cookie). Tabs of one browser share
 * the cookie, and a refresh token used twice ends the whole sign-in, so tabs take turns through
 * a Web Lock: each then sends the cookie its predecessor just received.
 */
export function refreshSession(): Promise<Session | null> {
  refreshing ??= (async () => {
    try {
      const exchange = () => post('/auth/refresh');
      const session = navigator.locks ? await navigator.locks.request('pollen-refresh', exchange) : await exchange();
      setSession(session);
      return session;
    } catch (error) {
      if (error instanceof PollenError && error.code === 'UNAUTHENTICATED') {
        setSession(null);
        return null;
      }
      throw error;
    } finally {
      refreshing = undefined;
    }
  })();
  return refreshing;
}

/** A valid access token for the next request or socket, refreshed first when it is about to expire. */
export async function accessToken(): Promise<string | undefined> {
  if (current && current.expiresAt - Date.now() > REFRESH_MARGIN_MS) return current.accessToken;
  if (!current) return undefined;
  return (await refreshSession())?.accessToken;
}
