import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MeDocument } from './generated/graphql.js';
import { connectWebSocket, PollenProcess, REPO_ROOT, signUp } from './support/testkit.js';

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Pollen logs the pid of the FerretDB it started. */
function embeddedDatabasePid(pollen: PollenProcess): number {
  const line = pollen.logs().find((l) => typeof l.embeddedDatabasePid === 'number');
  if (!line) throw new Error(`no embedded database pid in:\n${pollen.output.join('\n')}`);
  return line.embeddedDatabasePid as number;
}

describe('without MONGODB_URI', () => {
  it('starts its own FerretDB under DATA_DIR, keeps data across restarts and stops it on SIGTERM', async () => {
    const first = await PollenProcess.start({ database: false });
    const databasePid = embeddedDatabasePid(first);
    expect(isAlive(databasePid)).toBe(true);
    expect(statSync(path.join(first.dataDir, 'ferretdb')).isDirectory()).toBe(true);
    expect(statSync(path.join(first.dataDir, 'jwt-secret')).mode & 0o777).toBe(0o600);
    const { session } = await signUp(first, 'persistent_user');
    const socket = connectWebSocket(first.wsUrl, session.accessToken);
    await socket.execute(MeDocument);

    expect(await first.stop('SIGTERM')).toBe(0);
    expect(isAlive(databasePid)).toBe(false);
    // Graceful shutdown closes open sockets as "going away".
    expect((await socket.closed).code).toBe(1001);
    expect(first.logs().map((l) => l.msg)).toEqual(expect.arrayContaining(['shutting down', 'stopped']));

    // Same DATA_DIR: same store and same signing secret, so the old token still works.
    const second = await PollenProcess.start({ database: false, dataDir: first.dataDir });
    try {
      expect((await second.client(session.accessToken).data(MeDocument)).me?.username).toBe('persistent_user');
    } finally {
      expect(await second.stop('SIGINT')).toBe(0);
      expect(isAlive(embeddedDatabasePid(second))).toBe(false);
      second.removeDataDir();
    }
  });

  it('leaves no FerretDB behind when Pollen itself is killed with SIGKILL', async () => {
    const pollen = await PollenProcess.start({ database: false });
    const databasePid = embeddedDatabasePid(pollen);
    await pollen.stop('SIGKILL');
    await expect.poll(() => isAlive(databasePid), { timeout: 5_000 }).toBe(false);
    pollen.removeDataDir();
  });
});

describe('configuration', () => {
  it('is checked at start, with one clear line per problem', async () => {
    const run = promisify(execFile);
    const failure = await run(process.execPath, [path.join(REPO_ROOT, 'dist/main.js')], {
      env: { ...process.env, NODE_ENV: 'production', JWT_SECRET: 'short', PORT: 'eighty', ACCESS_TOKEN_TTL: 'soon', LOG_LEVEL: 'loud' },
    }).catch((error: { code: number; stderr: string }) => error);
    expect(failure).toMatchObject({ code: 2 });
    const lines = (failure as { stderr: string }).stderr.trim().split('\n');
    expect(lines[0]).toBe('Invalid configuration:');
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^ {2}- PORT="eighty" is invalid/),
      expect.stringMatching(/^ {2}- ACCESS_TOKEN_TTL="soon" is invalid: expected a duration/),
      expect.stringMatching(/^ {2}- LOG_LEVEL="loud" is invalid/),
      expect.stringMatching(/^ {2}- JWT_SECRET must be at least 32 bytes when NODE_ENV=production/),
    ]);
  });
});
