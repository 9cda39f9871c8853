import { describe, expect, it } from 'vitest';
import {
  LoginDocument, LogoutDocument, MeDocument, RefreshTokenDocument, RegisterDocument,
} from './generated/graphql.js';
import { errorCode, PollenProcess, signUp, usePollen } from './support/testkit.js';

const pollen = usePollen();

describe('a new user', () => {
  it('registers, then is recognised by me', async () => {
    const { session, client } = await signUp(pollen, 'Ada_Lovelace');
    expect(session.user.username).toBe('Ada_Lovelace');
    expect(session.user.email).toBe('ada_lovelace@example.com');
    expect(new Date(session.accessTokenExpiresAt).getTime()).toBeGreaterThan(Date.now() + 14 * 60_000);

    const { me } = await client.data(MeDocument);
    expect(me).toEqual(session.user);
  });

  it('is anonymous without a token: me is null', async () => {
    expect(await pollen.client().data(MeDocument)).toEqual({ me: null });
  });

  it('gets the email stored lower-case and can sign in with either name or email, in any case', async () => {
    const anonymous = pollen.client();
    await anonymous.data(RegisterDocument, {
      input: { username: 'grace.h', email: 'Grace.Hopper@Example.COM', password: 'Cobol#1959' },
    });
    const byName = await anonymous.data(LoginDocument, { input: { username: 'GRACE.H', password: 'Cobol#1959' } });
    const byEmail = await anonymous.data(LoginDocument, { input: { username: 'grace.hopper@example.com', password: 'Cobol#1959' } });
    expect(byName.login.user.email).toBe('grace.hopper@example.com');
    expect(byEmail.login.user.id).toBe(byName.login.user.id);
    expect(byEmail.login.refreshToken).not.toBe(byName.login.refreshToken);
  });
});

describe('registration rules', () => {
  const valid = { username: 'valid_name', email: 'valid@example.com', password: 'Val1d!pass' };
  const cases: Array<[string, Partial<typeof valid>, string]> = [
    ['a username that is too short', { username: 'ab' }, 'username'],
    ['a username that is too long', { username: 'a'.repeat(33) }, 'username'],
    ['a username with a space', { username: 'bad name' }, 'username'],
    ['an invalid email', { email: 'not-an-email' }, 'email'],
    ['a password that is too short', { password: 'Aa1!aa' }, 'password'],
    ['a password that is too long', { password: `Aa1!${'a'.repeat(125)}` }, 'password'],
    ['a password without upper case', { password: 'lower1!case' }, 'password'],
    ['a password without lower case', { password: 'UPPER1!CASE' }, 'password'],
    ['a password without a digit', { password: 'NoDigits!here' }, 'password'],
    ['a password without a special character', { password: 'NoSpecial1here' }, 'password'],
  ];
  it.each(cases)('refuses %s as BAD_USER_INPUT naming the field', async (_name, change, field) => {
    const result = await pollen.client().request(RegisterDocument, { input: { ...valid, ...change } });
    expect(errorCode(result)).toBe('BAD_USER_INPUT');
    expect(result.errors![0]!.extensions!.field).toBe(field);
    expect(result.errors![0]!.message).toMatch(new RegExp(`^${field}: `));
  });

  it('accepts a password of exactly 8 and of exactly 128 characters', async () => {
    for (const [name, password] of [['len_eight', 'Aa1!aaaa'], ['len_max', `Aa1!${'a'.repeat(124)}`]] as const) {
      const result = await pollen.client().request(RegisterDocument, {
        input: { username: name, email: `${name}@example.com`, password },
      });
      expect(result.errors).toBeUndefined();
    }
  });

  it('names every broken field at once', async () => {
    const result = await pollen.client().request(RegisterDocument, { input: { username: 'x', email: 'y', password: 'z' } });
    expect(errorCode(result)).toBe('BAD_USER_INPUT');
    const violations = result.errors![0]!.extensions!.violations as Array<{ field: string }>;
    expect(violations.map((v) => v.field)).toEqual(['username', 'email', 'password']);
  });

  it('refuses a taken username (in any case) and a taken email as CONFLICT', async () => {
    await signUp(pollen, 'Taken_Name');
    const sameName = await pollen.client().request(RegisterDocument, {
      input: { username: 'taken_NAME', email: 'other@example.com', password: 'Val1d!pass' },
    });
    expect(errorCode(sameName)).toBe('CONFLICT');
    expect(sameName.errors![0]!.extensions!.field).toBe('username');
    const sameEmail = await pollen.client().request(RegisterDocument, {
      input: { username: 'another_name', email: 'TAKEN_name@example.com', password: 'Val1d!pass' },
    });
    expect(errorCode(sameEmail)).toBe('CONFLICT');
    expect(sameEmail.errors![0]!.extensions!.field).toBe('email');
  });

  it('lets exactly one of many concurrent registrations of one name win', async () => {
    const attempts = await Promise.all(Array.from({ length: 8 }, (_, i) => pollen.client().request(RegisterDocument, {
      input: { username: 'racer', email: `racer${i}@example.com`, password: 'Val1d!pass' },
    })));
    const winners = attempts.filter((a) => a.data?.register);
    expect(winners).toHaveLength(1);
    expect(attempts.filter((a) => a.errors).map(errorCode)).toEqual(Array(7).fill('CONFLICT'));
  });
});

describe('signing in', () => {
  it('gives a wrong password and an unknown user the same error, in about the same time', async () => {
    const { session } = await signUp(pollen);
    const timed = async (username: string) => {
      const started = performance.now();
      const result = await pollen.client().request(LoginDocument, { input: { username, password: 'Wrong!pass1' } });
      return { ms: performance.now() - started, error: result.errors?.[0] };
    };
    const wrongPassword = [];
    const unknownUser = [];
    // Four tries each stays below the lock threshold of five.
    for (let i = 0; i < 4; i += 1) {
      wrongPassword.push(await timed(session.user.username));
      unknownUser.push(await timed(`nobody_${i}`));
    }
    expect(unknownUser[0]!.error!.message).toBe(wrongPassword[0]!.error!.message);
    expect(unknownUser[0]!.error!.extensions!.code).toBe('UNAUTHENTICATED');
    expect(wrongPassword[0]!.error!.extensions!.code).toBe('UNAUTHENTICATED');
    const median = (runs: Array<{ ms: number }>) => runs.map((r) => r.ms).sort((a, b) => a - b)[runs.length >> 1]!;
    // Both paths run one argon2 verification, so neither answers markedly faster.
    expect(median(unknownUser) / median(wrongPassword)).toBeGreaterThan(0.5);
    expect(median(unknownUser) / median(wrongPassword)).toBeLessThan(2);
  });

  it('locks an account for 15 minutes after 5 failures, even for the right password, across restarts', async () => {
    const { session, password } = await signUp(pollen);
    const login = (pw: string) => pollen.client().request(LoginDocument, { input: { username: session.user.username, password: pw } });
    for (let i = 0; i < 5; i += 1) expect(errorCode(await login('Wrong!pass1'))).toBe('UNAUTHENTICATED');

    const locked = await login(password);
    expect(errorCode(locked)).toBe('RATE_LIMITED');
    expect(locked.errors![0]!.message).toMatch(/try again in 15 minutes/);
    expect(locked.errors![0]!.extensions!.retryAfterSeconds).toBeGreaterThan(14 * 60);
    // The email names the same account, so it is locked too.
    expect(errorCode(await pollen.client().request(LoginDocument, {
      input: { username: session.user.email!, password },
    }))).toBe('RATE_LIMITED');

    // A second instance on the same database (and this one restarted) still refuses.
    const second = await PollenProcess.start({ database: pollen.database, dataDir: pollen.dataDir });
    try {
      expect(errorCode(await second.client().request(LoginDocument, {
        input: { username: session.user.username, password },
      }))).toBe('RATE_LIMITED');
    } finally {
      await second.stop();
    }
  });

  it('counts failures that arrive at once without losing any', async () => {
    const { session, password } = await signUp(pollen);
    const login = (pw: string) => pollen.client().request(LoginDocument, { input: { username: session.user.username, password: pw } });
    await Promise.all(Array.from({ length: 5 }, () => login('Wrong!pass1')));
    expect(errorCode(await login(password))).toBe('RATE_LIMITED');
  });

  it('clears the failure count after a successful sign-in', async () => {
    const { session, password } = await signUp(pollen);
    const login = (pw: string) => pollen.client().request(LoginDocument, { input: { username: session.user.username, password: pw } });
    for (let i = 0; i < 4; i += 1) await login('Wrong!pass1');
    expect((await login(password)).errors).toBeUndefined();
    for (let i = 0; i < 4; i += 1) await login('Wrong!pass1');
    expect((await login(password)).errors).toBeUndefined();
  });
});

describe('refresh tokens', () => {
  it('rotate: the new one works, the old one dies', async () => {
    const { session } = await signUp(pollen);
    const anonymous = pollen.client();
    const { refreshToken: rotated } = await anonymous.data(RefreshTokenDocument, { refreshToken: session.refreshToken });
    expect(rotated.refreshToken).not.toBe(session.refreshToken);
    expect(rotated.user.id).toBe(session.user.id);
    expect((await pollen.client(rotated.accessToken).data(MeDocument)).me?.id).toBe(session.user.id);

    const { refreshToken: again } = await anonymous.data(RefreshTokenDocument, { refreshToken: rotated.refreshToken });
    expect(again.refreshToken).not.toBe(rotated.refreshToken);
  });

  it('detect reuse: presenting a rotated token ends the whole sign-in', async () => {
    const { session } = await signUp(pollen);
    const anonymous = pollen.client();
    const { refreshToken: rotated } = await anonymous.data(RefreshTokenDocument, { refreshToken: session.refreshToken });

    const replay = await anonymous.request(RefreshTokenDocument, { refreshToken: session.refreshToken });
    expect(errorCode(replay)).toBe('UNAUTHENTICATED');
    expect(replay.errors![0]!.message).toMatch(/already used/);
    // The thief's replay also killed the legitimate, newer token.
    expect(errorCode(await anonymous.request(RefreshTokenDocument, { refreshToken: rotated.refreshToken }))).toBe('UNAUTHENTICATED');
  });

  it('leave other sign-ins alone when one family is revoked', async () => {
    const { session, password } = await signUp(pollen);
    const anonymous = pollen.client();
    const { login: other } = await anonymous.data(LoginDocument, { input: { username: session.user.username, password } });
    await anonymous.data(LogoutDocument, { refreshToken: session.refreshToken });
    expect(errorCode(await anonymous.request(RefreshTokenDocument, { refreshToken: session.refreshToken }))).toBe('UNAUTHENTICATED');
    expect((await anonymous.request(RefreshTokenDocument, { refreshToken: other.refreshToken })).errors).toBeUndefined();
  });

  it('rotate once even when the same token is presented twice at once', async () => {
    const { session } = await signUp(pollen);
    const attempts = await Promise.all([1, 2, 3].map(() =>
      pollen.client().request(RefreshTokenDocument, { refreshToken: session.refreshToken })));
    expect(attempts.filter((a) => a.data?.refreshToken)).toHaveLength(1);
    expect(attempts.filter((a) => a.errors).map(errorCode)).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED']);
  });

  it('are refused when unknown', async () => {
    const result = await pollen.client().request(RefreshTokenDocument, { refreshToken: 'not-a-real-token' });
    expect(errorCode(result)).toBe('UNAUTHENTICATED');
  });

  it('logout revokes the family, including tokens rotated from it', async () => {
    const { session } = await signUp(pollen);
    const anonymous = pollen.client();
    const { refreshToken: rotated } = await anonymous.data(RefreshTokenDocument, { refreshToken: session.refreshToken });
    expect(await anonymous.data(LogoutDocument, { refreshToken: rotated.refreshToken })).toEqual({ logout: true });
    expect(errorCode(await anonymous.request(RefreshTokenDocument, { refreshToken: rotated.refreshToken }))).toBe('UNAUTHENTICATED');
  });
});
