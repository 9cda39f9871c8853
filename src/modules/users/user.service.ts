import type { Types } from 'mongoose';
import { readById } from '../../db/loaders.js';
import { conflict, isDuplicateKeyError, type FieldViolation } from '../../errors.js';
import { UserModel, type User } from './user.model.js';

export const USERNAME_PATTERN = /^[A-Za-z0-9_.-]{3,32}$/;
// Deliberately simple: one @, no spaces, a dot in the domain. Deliverability is not our check.
const EMAIL_PATTERN = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const MAX_EMAIL_LENGTH = 254;

export interface NewUser { username: string; email: string; passwordHash: string }

export function usernameViolation(username: string): FieldViolation | undefined {
  return USERNAME_PATTERN.test(username)
    ? undefined
    : { field: 'username', message: 'must be 3 to 32 characters of letters, digits, "_", "." or "-"' };
}

export function emailViolation(email: string): FieldViolation | undefined {
  return email.length <= MAX_EMAIL_LENGTH && EMAIL_PATTERN.test(email)
    ? undefined
    : { field: 'email', message: 'must be a valid email address such as ada@example.com' };
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export class UserService {
  /** Inserts a user; the unique indexes decide duplicates, so concurrent sign-ups cannot both win. */
  async create(input: NewUser): Promise<User> {
    const fields = {
      username: input.username,
      usernameKey: input.username.toLowerCase(),
      email: normalizeEmail(input.email),
      passwordHash: input.passwordHash,
    };
    try {
      return (await UserModel.create(fields)).toObject();
    } catch (error) {
      if (!isDuplicateKeyError(error)) throw error;
      // FerretDB does not name the violated index, so look at which value is taken.
      const field = (await UserModel.exists({ usernameKey: fields.usernameKey })) ? 'username' : 'email';
      throw conflict(`That ${field} is already taken.`, { field });
    }
  }

  /** Finds a user by username (any case) or email; deleted accounts are not found. */
  async findByLogin(identifier: string): Promise<User | null> {
    const text = identifier.trim();
    const filter = text.includes('@') ? { email: normalizeEmail(text) } : { usernameKey: text.toLowerCase() };
    return UserModel.findOne({ ...filter, deletedAt: null }).lean<User>().exec();
  }

  /** By username, in any case; deleted accounts are not found. */
  findByUsername(username: string): Promise<User | null> {
    return UserModel.findOne({ usernameKey: username.trim().toLowerCase(), deletedAt: null }).lean<User>().exec();
  }

  /** A user who has not deleted their account. */
  async get(id: string): Promise<User | null> {
    const user = await readById<User>(UserModel, id);
    return user && !user.deletedAt ? user : null;
  }

  /**
   * Deletes an account's personal data (email, password, name) and frees its username and email;
   * the record stays as "deleted-user-…" for what the user made in shared projects.
   */
  async erase(id: Types.ObjectId): Promise<void> {
    const hex = id.toHexString();
    await UserModel.updateOne({ _id: id }, { $set: {
      username: `deleted-user-${hex.slice(-8)}`, usernameKey: `deleted:${hex}`, email: `deleted:${hex}`, passwordHash: '', deletedAt: new Date(),
    } }).exec();
  }
}
