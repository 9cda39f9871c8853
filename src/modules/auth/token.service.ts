import { createHash, randomBytes, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { unauthenticated } from '../../errors.js';

/** Who an access token speaks for, as checked on HTTP and on each graphql-ws operation. */
export interface Viewer {
  userId: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

export interface SignedAccessToken { token: string; expiresAt: Date }

const ALGORITHM = 'HS256';

export class TokenService {
  constructor(
    private readonly secret: string,
    private readonly accessTokenTtlSeconds: number,
  ) {}

  signAccessToken(userId: string): SignedAccessToken {
    const token = jwt.sign({}, this.secret, {
      algorithm: ALGORITHM,
      subject: userId,
      expiresIn: this.accessTokenTtlSeconds,
      jwtid: randomUUID(),
    });
    const { exp } = jwt.decode(token) as { exp: number };
    return { token, expiresAt: new Date(exp * 1000) };
  }

  /** Accepts "Bearer <jwt>" or a bare token; throws UNAUTHENTICATED for anything else. */
  verifyAccessToken(authorization: string): Viewer {
    const token = authorization.replace(/^Bearer\s+/i, '').trim();
    try {
      const claims = jwt.verify(token, this.secret, { algorithms: [ALGORITHM] });
      if (typeof claims === 'string' || !claims.sub || typeof claims.exp !== 'number') {
        throw new Error('missing claims');
      }
      return { userId: claims.sub, expiresAt: claims.exp };
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
