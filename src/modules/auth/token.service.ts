import { createHash, createSecretKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { unauthenticated } from '../../errors.js';

/** Who an access token speaks for, as checked on HTTP and on each graphql-ws operation. */
export interface Viewer {
  userId: string;
  /** The sign-in the token belongs to (see Session). */
  sessionId: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

export interface SignedAccessToken { token: string; expiresAt: Date }

const ALGORITHM = 'HS256';
/** The `purpose` claim of a signed link: it opens one path, and is never an access token. */
const LINK_PURPOSE = 'link';
const LINK_TTL_SECONDS = 300;

export class TokenService {
  /**
   * The secret as a KeyObject, made once: given a string, jsonwebtoken first tries to read it as
   * a PEM key on every call, which cost ~1.9 ms of CPU per verified request (a KeyObject: ~0.03 ms).
   */
  private readonly key: KeyObject;

  constructor(
    secret: string,
    private readonly accessTokenTtlSeconds: number,
  ) {
    this.key = createSecretKey(Buffer.from(secret));
  }

  signAccessToken(userId: string, sessionId: string): SignedAccessToken {
    const token = jwt.sign({ sid: sessionId }, this.key, {
      algorithm: ALGORITHM,
      subject: userId,
      expiresIn: this.accessTokenTtlSeconds,
      jwtid: randomUUID(),
    });
    const { exp } = jwt.decode(token) as { exp: number };
    return { token, expiresAt: new Date(exp * 1000) };
  }

  /** A token that lets a plain GET of `path` (a download) act as the viewer for a few minutes, with no header. */
  signLink(viewer: Viewer, path: string): string {
    return jwt.sign({ sid: viewer.sessionId, purpose: LINK_PURPOSE, path }, this.key, {
      algorithm: ALGORITHM, subject: viewer.userId, expiresIn: Math.min(LINK_TTL_SECONDS, viewer.expiresAt - Math.floor(Date.now() / 1000)),
    });
  }

  /** The viewer of a signed link for `path`; UNAUTHENTICATED when it is for another path, expired or forged. */
  verifyLink(token: string, path: string): Viewer {
    try {
      const claims = jwt.verify(token, this.key, { algorithms: [ALGORITHM] });
      if (typeof claims === 'string' || claims.purpose !== LINK_PURPOSE || claims.path !== path || !claims.sub ||
        typeof claims.exp !== 'number' || typeof claims.sid !== 'string') {
        throw new Error('not a link for this path');
      }
      return { userId: claims.sub, sessionId: claims.sid, expiresAt: claims.exp };
    } catch {
      throw unauthenticated('This link is invalid or has expired: ask for a new one.');
    }
  }

  /**
   * Accepts "Bearer <jwt>" or a bare token; throws UNAUTHENTICATED for anything else. Only the
   * signature and expiry: whether its sign-in still lasts is AuthService.authenticate's to say.
   */
  verifyAccessToken(authorization: string): Viewer {
    const token = authorization.replace(/^Bearer\s+/i, '').trim();
    try {
      const claims = jwt.verify(token, this.key, { algorithms: [ALGORITHM] });
      if (typeof claims === 'string' || !claims.sub || typeof claims.exp !== 'number' || typeof claims.sid !== 'string' ||
        claims.purpose !== undefined) {
        throw new Error('missing claims, or a signed link');
      }
      return { userId: claims.sub, sessionId: claims.sid, expiresAt: claims.exp };
    } catch (error) {
      throw unauthenticated(error instanceof jwt.TokenExpiredError
        ? 'Your access token has expired: get a new one with refreshToken.'
        : 'Your access token is invalid: sign in again.');
    }
  }

  static isExpired(viewer: Viewer, now = Date.now()): boolean {
    return viewer.expiresAt * 1000 <= now;
  }

  /** Refresh tokens are opaque; only their hash is stored. */
  static newRefreshToken(): string {
    return randomBytes(32).toString('base64url');
  }

  static hashRefreshToken(token: string): string {
    return createHash('sha256').update(token).digest('hex');
  }
}
