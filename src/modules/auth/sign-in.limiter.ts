import { rateLimited } from '../../errors.js';

/** Clients whose buckets are kept; the least recently seen is forgotten past it. */
const MAX_CLIENTS = 10_000;

/**
 * A token bucket per client address for the mutations that cost argon2 work or write a token
 * before anyone is signed in (register, login, refreshToken, deleteAccount): `perMinute` of them,
 * refilled evenly. Per instance; several instances each allow as much.
 */
export class SignInLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly perMinute: number, private readonly now: () => number = Date.now) {}

  /** Takes one for `client`, or throws RATE_LIMITED saying when to try again. */
  take(client: string): void {
    const now = this.now();
    const bucket = this.buckets.get(client) ?? { tokens: this.perMinute, at: now };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + ((now - bucket.at) / 60_000) * this.perMinute);
    bucket.at = now;
    // Most recently seen last, so that the first is the one to forget.
    this.buckets.delete(client);
    this.buckets.set(client, bucket);
    if (this.buckets.size > MAX_CLIENTS) this.buckets.delete(this.buckets.keys().next().value!);
    if (bucket.tokens < 1) {
      const seconds = Math.ceil(((1 - bucket.tokens) / this.perMinute) * 60);
      throw rateLimited(`Too many sign-ins, sign-ups and token refreshes from your address: try again in ${seconds} s.`, seconds);
    }
    bucket.tokens -= 1;
  }
}
