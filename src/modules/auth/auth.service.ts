import { randomUUID } from 'node:crypto';
import { Types } from 'mongoose';
import { badUserInput, isDuplicateKeyError, rateLimited, unauthenticated, type FieldViolation } from '../../errors.js';
import { UserModel, type User } from '../users/user.model.js';
import { emailViolation, normalizeEmail, usernameViolation, type UserService } from '../users/user.service.js';
import type { AuthPayload } from './auth-payload.model.js';
import type { LoginInput, RegisterInput } from './auth.inputs.js';
import { LoginGuardModel } from './login-guard.model.js';
import { hashPassword, passwordViolation, verifyPassword } from './password.policy.js';
import { RefreshTokenModel } from './refresh-token.model.js';
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
    return this.issueTokens(user, randomUUID());
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
    await LoginGuardModel.deleteOne({ key: guardKey }).exec();
    return this.issueTokens(user!, randomUUID());
  }

  /** Rotates a refresh token. A token that was already rotated signals theft: its family dies. */
  async refresh(refreshToken: string): Promise<AuthPayload> {
    const record = await RefreshTokenModel.findOne({ tokenHash: TokenService.hashRefreshToken(refreshToken) }).lean().exec();
    const now = new Date();
    if (!record || record.revokedAt || record.expiresAt <= now) {
      throw unauthenticated('Your refresh token is invalid or has expired: sign in again.');
    }
    const claimed = record.rotatedAt
      ? null
      : await RefreshTokenModel.findOneAndUpdate({ _id: record._id, rotatedAt: null }, { $set: { rotatedAt: now } }).exec();
    if (!claimed) {
      await this.revokeFamily(record.familyId);
      throw unauthenticated('This refresh token was already used, so every session of that sign-in was ended: sign in again.');
    }
    const user = await UserModel.findById(record.userId).lean<User>().exec();
    if (!user) throw unauthenticated('Your account no longer exists.');
    return this.issueTokens(user, record.familyId);
  }

  /** Ends the sign-in the token belongs to; unknown tokens are accepted silently. */
  async logout(refreshToken: string): Promise<boolean> {
    const record = await RefreshTokenModel.findOne({ tokenHash: TokenService.hashRefreshToken(refreshToken) }).lean().exec();
    if (record) await this.revokeFamily(record.familyId);
    return true;
  }

  private async issueTokens(user: User, familyId: string): Promise<AuthPayload> {
    const access = this.tokens.signAccessToken(user._id.toHexString());
    const refreshToken = TokenService.newRefreshToken();
    await RefreshTokenModel.create({
      tokenHash: TokenService.hashRefreshToken(refreshToken),
      familyId,
      userId: new Types.ObjectId(user._id),
      expiresAt: new Date(Date.now() + this.refreshTokenTtlSeconds * 1000),
    });
    return { accessToken: access.token, accessTokenExpiresAt: access.expiresAt, refreshToken, user };
  }

  private async revokeFamily(familyId: string): Promise<void> {
    await RefreshTokenModel.updateMany({ familyId, revokedAt: null }, { $set: { revokedAt: new Date() } }).exec();
  }

  private async assertNotLocked(key: string): Promise<void> {
    const guard = await LoginGuardModel.findOne({ key }).lean().exec();
    const remainingMs = (guard?.lockedUntil?.getTime() ?? 0) - Date.now();
    if (remainingMs > 0) {
      const minutes = Math.ceil(remainingMs / 60_000);
      throw rateLimited(`Too many failed sign-ins for this account: try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`,
        Math.ceil(remainingMs / 1000));
    }
  }

  private async recordFailedLogin(key: string): Promise<void> {
    const now = new Date();
    const windowStart = new Date(now.getTime() - FAILED_LOGIN_WINDOW_MS);
    const guard = await this.pushFailure(key, now);
    const recent = guard.failures.filter((at) => at > windowStart);
    if (recent.length >= MAX_FAILED_LOGINS) {
      await LoginGuardModel.updateOne({ key }, { $set: { lockedUntil: new Date(now.getTime() + LOCK_MS), failures: [] } }).exec();
    } else if (recent.length < guard.failures.length) {
      await LoginGuardModel.updateOne({ key }, { $pull: { failures: { $lte: windowStart } } }).exec();
    }
  }

  private async pushFailure(key: string, at: Date): Promise<{ failures: Date[] }> {
    const push = () => LoginGuardModel.findOneAndUpdate({ key }, { $push: { failures: at } }, { upsert: true, returnDocument: "after" }).lean().exec();
    try {
      return (await push())!;
    } catch (error) {
      // Two first failures raced to create the guard: the loser's push lands on the winner's.
      if (!isDuplicateKeyError(error)) throw error;
      return (await push())!;
    }
  }
}
