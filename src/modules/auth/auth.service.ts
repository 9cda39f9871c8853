import { Types } from 'mongoose';
import { readById } from '../../db/loaders.js';
import { badUserInput, isDuplicateKeyError, rateLimited, unauthenticated, type FieldViolation } from '../../errors.js';
import { OBJECT_ID_TEXT } from '../../graphql/ids.js';
import { topic, type PubSub } from '../../pubsub/pubsub.js';
import type { ProjectService } from '../projects/project.service.js';
import type { User } from '../users/user.model.js';
import { emailViolation, normalizeEmail, usernameViolation, type UserService } from '../users/user.service.js';
import type { AuthPayload } from './auth-payload.model.js';
import type { LoginInput, RegisterInput } from './auth.inputs.js';
import { LoginFailureModel } from './login-failure.model.js';
import { LoginLockModel } from './login-lock.model.js';
import { hashPassword, passwordViolation, verifyPassword } from './password.policy.js';
import { RefreshTokenModel, type RefreshToken } from './refresh-token.model.js';
import { SessionModel, type Session } from './session.model.js';
import type { SignInLimiter } from './sign-in.limiter.js';
import { TokenService, type Viewer } from './token.service.js';

/** Sign-ins that ended: one (sessionId), or every one of a user (an account deleted). Open sockets close. */
export const sessionsEnded = topic<{ userId: string; sessionId?: string }>('sessions.ended');

const MAX_FAILED_LOGINS = 5;
const FAILED_LOGIN_WINDOW_MS = 15 * 60_000;
const LOCK_MS = 15 * 60_000;
const BAD_CREDENTIALS = 'The username, email or password is incorrect.';
const SIGN_IN_ENDED = 'Your sign-in has ended: sign in again.';

export class AuthService {
  constructor(
    private readonly users: UserService,
    private readonly projects: ProjectService,
    private readonly tokens: TokenService,
    private readonly limiter: SignInLimiter,
    private readonly pubsub: PubSub,
    private readonly refreshTokenTtlSeconds: number,
  ) {}

  /**
   * Who an Authorization header speaks for: a valid access token whose sign-in has not ended (read
   * by id, together with the other requests of the same moment). Throws UNAUTHENTICATED otherwise.
   */
  async authenticate(authorization: string): Promise<Viewer> {
    return this.checkSession(this.tokens.verifyAccessToken(authorization));
  }

  /** Who a signed link for `path` speaks for, as long as the sign-in that made it lasts. */
  async authenticateLink(token: string, path: string): Promise<Viewer> {
    return this.checkSession(this.tokens.verifyLink(token, path));
  }

  /** A signed link's token for `path` (see TokenService.signLink). */
  signLink(viewer: Viewer, path: string): string {
    return this.tokens.signLink(viewer, path);
  }

  private async checkSession(viewer: Viewer): Promise<Viewer> {
    const session = await readById<Session>(SessionModel, viewer.sessionId);
    if (!session || session.endedAt || session.userId.toHexString() !== viewer.userId) throw unauthenticated(SIGN_IN_ENDED);
    return viewer;
  }

  async register(input: RegisterInput, client: string): Promise<AuthPayload> {
    this.limiter.take(client);
    const violations = [usernameViolation(input.username), emailViolation(normalizeEmail(input.email)),
      passwordViolation(input.password)].filter((v): v is FieldViolation => v !== undefined);
    if (violations.length > 0) throw badUserInput(violations);
    const user = await this.users.create({ ...input, passwordHash: await hashPassword(input.password) });
    return this.signIn(user);
  }

  async login(input: LoginInput, client: string): Promise<AuthPayload> {
    this.limiter.take(client);
    const user = await this.users.findByLogin(input.username);
    // Unknown names are throttled too, so a lock reveals nothing about which accounts exist.
    const guardKey = user ? `user:${user._id.toHexString()}` : `name:${input.username.trim().toLowerCase()}`;
    await this.assertNotLocked(guardKey);
    if (!(await verifyPassword(user?.passwordHash, input.password))) {
      await this.recordFailedLogin(guardKey);
      throw unauthenticated(BAD_CREDENTIALS);
    }
    await LoginFailureModel.deleteMany({ key: guardKey }).exec();
    return this.signIn(user!);
  }

  /**
   * Rotates a refresh token. Each token can be rotated once: its successor is stored under a
   * unique `issuedFor` key, so of two concurrent rotations only one succeeds. Presenting a token
   * that was already rotated signals theft, and its whole family is revoked.
   */
  async refresh(refreshToken: string, client: string): Promise<AuthPayload> {
    this.limiter.take(client);
    const record = await RefreshTokenModel.findOne({ tokenHash: TokenService.hashRefreshToken(refreshToken) }).lean().exec();
    if (!record || record.revokedAt || record.expiresAt <= new Date()) {
      throw unauthenticated('Your refresh token is invalid or has expired: sign in again.');
    }
    // Sign-ins made before sessions existed have none: they end here.
    const session = OBJECT_ID_TEXT.test(record.familyId) ? await readById<Session>(SessionModel, record.familyId) : null;
    const user = await this.users.get(record.userId.toHexString());
    if (!session || session.endedAt || !user) throw unauthenticated(SIGN_IN_ENDED);
    const successor = record.rotatedAt ? undefined : await this.rotate(user, record);
    if (!successor) {
      await this.endSession(record.familyId, user._id.toHexString());
      throw unauthenticated('This refresh token was already used, so every session of that sign-in was ended: sign in again.');
    }
    return successor;
  }

  /** Issues the one successor of a token; undefined when another rotation already did. */
  private async rotate(user: User, token: RefreshToken): Promise<AuthPayload | undefined> {
    try {
      const payload = await this.issueTokens(user, token.familyId, `rotation:${token._id.toHexString()}`);
      await RefreshTokenModel.updateOne({ _id: token._id }, { $set: { rotatedAt: new Date() } }).exec();
      return payload;
    } catch (error) {
      if (isDuplicateKeyError(error)) return undefined;
      throw error;
    }
  }

  /** Ends the sign-in the token belongs to, with its access tokens and open sockets; unknown tokens are accepted silently. */
  async logout(refreshToken: string): Promise<boolean> {
    const record = await RefreshTokenModel.findOne({ tokenHash: TokenService.hashRefreshToken(refreshToken) }).lean().exec();
    if (record) await this.endSession(record.familyId, record.userId.toHexString());
    return true;
  }

  /**
   * Deletes the signed-in user's account: their solo projects go with it, they leave the others
   * (refused, before anything changes, while they are the last owner of a project with other
   * members), and every sign-in, token and open socket of theirs ends.
   */
  async deleteAccount(viewer: Viewer, password: string, client: string): Promise<void> {
    this.limiter.take(client);
    const user = await this.users.get(viewer.userId);
    if (!user || !(await verifyPassword(user.passwordHash, password))) {
      throw badUserInput([{ field: 'password', message: 'is not your password' }]);
    }
    await this.projects.removeUserEverywhere(user._id);
    await SessionModel.updateMany({ userId: user._id, endedAt: null }, { $set: { endedAt: new Date() } }).exec();
    await RefreshTokenModel.deleteMany({ userId: user._id }).exec();
    const guardKey = `user:${viewer.userId}`;
    await LoginFailureModel.deleteMany({ key: guardKey }).exec();
    await LoginLockModel.deleteMany({ key: guardKey }).exec();
    await this.users.erase(user._id);
    this.pubsub.publish(sessionsEnded, { userId: viewer.userId });
  }

  private async signIn(user: User): Promise<AuthPayload> {
    const session = await SessionModel.create({ userId: user._id });
    const sessionId = session._id.toHexString();
    return this.issueTokens(user, sessionId, `sign-in:${sessionId}`);
  }

  /** A refresh token's family is its session. */
  private async issueTokens(user: User, familyId: string, issuedFor: string): Promise<AuthPayload> {
    const access = this.tokens.signAccessToken(user._id.toHexString(), familyId);
    const refreshToken = TokenService.newRefreshToken();
    await RefreshTokenModel.create({
      tokenHash: TokenService.hashRefreshToken(refreshToken),
      familyId,
      issuedFor,
      userId: new Types.ObjectId(user._id),
      expiresAt: new Date(Date.now() + this.refreshTokenTtlSeconds * 1000),
    });
    return { accessToken: access.token, accessTokenExpiresAt: access.expiresAt, refreshToken, user };
  }

  private async endSession(sessionId: string, userId: string): Promise<void> {
    const now = new Date();
    if (OBJECT_ID_TEXT.test(sessionId)) await SessionModel.updateOne({ _id: sessionId, endedAt: null }, { $set: { endedAt: now } }).exec();
    await RefreshTokenModel.updateMany({ familyId: sessionId, revokedAt: null }, { $set: { revokedAt: now } }).exec();
    this.pubsub.publish(sessionsEnded, { userId, sessionId });
  }

  private async assertNotLocked(key: string): Promise<void> {
    const lock = await LoginLockModel.findOne({ key, lockedUntil: { $gt: new Date() } }).lean().exec();
    if (lock) {
      const remainingMs = lock.lockedUntil.getTime() - Date.now();
      const minutes = Math.ceil(remainingMs / 60_000);
      throw rateLimited(`Too many failed sign-ins for this account: try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`,
        Math.ceil(remainingMs / 1000));
    }
  }

  private async recordFailedLogin(key: string): Promise<void> {
    const now = new Date();
    const windowStart = new Date(now.getTime() - FAILED_LOGIN_WINDOW_MS);
    await LoginFailureModel.create({ key, at: now });
    await LoginFailureModel.deleteMany({ key, at: { $lte: windowStart } }).exec();
    if ((await LoginFailureModel.countDocuments({ key }).exec()) < MAX_FAILED_LOGINS) return;
    const lockedUntil = new Date(now.getTime() + LOCK_MS);
    try {
      await LoginLockModel.updateOne({ key }, { $set: { lockedUntil } }, { upsert: true }).exec();
    } catch (error) {
      // Two failures raced to create the lock: it exists now, so set its time.
      if (!isDuplicateKeyError(error)) throw error;
      await LoginLockModel.updateOne({ key }, { $set: { lockedUntil } }).exec();
    }
    await LoginFailureModel.deleteMany({ key }).exec();
  }
}
