import { randomUUID } from 'node:crypto';
import { Types } from 'mongoose';
import { badUserInput, isDuplicateKeyError, rateLimited, unauthenticated, type FieldViolation } from '../../errors.js';
import { UserModel, type User } from '../users/user.model.js';
import { emailViolation, normalizeEmail, usernameViolation, type UserService } from '../users/user.service.js';
import type { AuthPayload } from './auth-payload.model.js';
import type { LoginInput, RegisterInput } from './auth.inputs.js';
import { LoginFailureModel } from './login-failure.model.js';
import { LoginLockModel } from './login-lock.model.js';
import { hashPassword, passwordViolation, verifyPassword } from './password.policy.js';
import { RefreshTokenModel, type RefreshToken } from './refresh-token.model.js';
import { TokenService } from './token.service.js';

const MAX_FAILED_LOGINS = 5;
const FAILED_LOGIN_WINDOW_MS = 15 * 60_000;
const LOCK_MS = 15 * 60_000;
const BAD_CREDENTIALS = 'The username, email or password is incorrect.';

export class AuthService {
  constructor(
    private readonly users: UserService,
    private readonly tokens: TokenService,
    private readonly refreshTokenTtlSeconds: number,
  ) {}

  async register(input: RegisterInput): Promise<AuthPayload> {
    const violations = [usernameViolation(input.username), emailViolation(normalizeEmail(input.email)),
      passwordViolation(input.password)].filter((v): v is FieldViolation => v !== undefined);
    if (violations.length > 0) throw badUserInput(violations);
    const user = await this.users.create({ ...input, passwordHash: await hashPassword(input.password) });
    const familyId = randomUUID();
    return this.issueTokens(user, familyId, `sign-in:${familyId}`);
  }

  async login(input: LoginInput): Promise<AuthPayload> {
    const user = await this.users.findByLogin(input.username);
    // Unknown names are throttled too, so a lock reveals nothing about which accounts exist.
    const guardKey = user ? `user:${user._id.toHexString()}` : `name:${input.username.trim().toLowerCase()}`;
    await this.assertNotLocked(guardKey);
    if (!(await verifyPassword(user?.passwordHash, input.password))) {
      await this.recordFailedLogin(guardKey);
      throw unauthenticated(BAD_CREDENTIALS);
    }
    await LoginFailureModel.deleteMany({ key: guardKey }).exec();
    const familyId = randomUUID();
    return this.issueTokens(user!, familyId, `sign-in:${familyId}`);
  }

  /**
   * Rotates a refresh token. Each token can be rotated once: its successor is stored under a
   * unique `issuedFor` key, so of two concurrent rotations only one succeeds. Presenting a token
   * that was already rotated signals theft, and its whole family is revoked.
   */
  async refresh(refreshToken: string): Promise<AuthPayload> {
    const record = await RefreshTokenModel.findOne({ tokenHash: TokenService.hashRefreshToken(refreshToken) }).lean().exec();
    if (!record || record.revokedAt || record.expiresAt <= new Date()) {
      throw unauthenticated('Your refresh token is invalid or has expired: sign in again.');
    }
    const user = await UserModel.findById(record.userId).lean<User>().exec();
    if (!user) throw unauthenticated('Your account no longer exists.');
    const successor = record.rotatedAt ? undefined : await this.rotate(user, record);
    if (!successor) {
      await this.revokeFamily(record.familyId);
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

  /** Ends the sign-in the token belongs to; unknown tokens are accepted silently. */
  async logout(refreshToken: string): Promise<boolean> {
    const record = await RefreshTokenModel.findOne({ tokenHash: TokenService.hashRefreshToken(refreshToken) }).lean().exec();
    if (record) await this.revokeFamily(record.familyId);
    return true;
  }

  private async issueTokens(user: User, familyId: string, issuedFor: string): Promise<AuthPayload> {
    const access = this.tokens.signAccessToken(user._id.toHexString());
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

  private async revokeFamily(familyId: string): Promise<void> {
    await RefreshTokenModel.updateMany({ familyId, revokedAt: null }, { $set: { revokedAt: new Date() } }).exec();
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
