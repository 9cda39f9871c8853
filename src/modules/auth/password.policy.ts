import argon2 from 'argon2';
import type { FieldViolation } from '../../errors.js';

const MIN_LENGTH = 8;
const MAX_LENGTH = 128;

/** The original design's rule: 8 to 128 characters with upper, lower, digit and special. */
export function passwordViolation(password: string): FieldViolation | undefined {
  const missing = [
    [/[A-Z]/, 'an upper-case letter'],
    [/[a-z]/, 'a lower-case letter'],
    [/[0-9]/, 'a digit'],
    [/[^A-Za-z0-9]/, 'a special character'],
  ].filter(([pattern]) => !(pattern as RegExp).test(password)).map(([, name]) => name);
  if (password.length < MIN_LENGTH || password.length > MAX_LENGTH || missing.length > 0) {
    const needs = missing.length > 0 ? ` and contain ${missing.join(', ')}` : '';
    return { field: 'password', message: `must be ${MIN_LENGTH} to ${MAX_LENGTH} characters long${needs}` };
  }
  return undefined;
}

export function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, { type: argon2.argon2id });
}

let decoyHash: Promise<string> | undefined;

/**
 * Verifies a password against a stored hash. Without a stored hash (unknown user) it still
 * verifies against a decoy, so that both cases take about the same time.
 */
export async function verifyPassword(storedHash: string | undefined, password: string): Promise<boolean> {
  decoyHash ??= hashPassword('decoy password that matches no one');
  const hash = storedHash ?? (await decoyHash);
  const matches = await argon2.verify(hash, password).catch(() => false);
  return matches && storedHash !== undefined;
}
