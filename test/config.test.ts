import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseDurationSeconds } from '../src/config.js';

describe('loadConfig', () => {
  const dataDir = () => mkdtempSync(path.join(tmpdir(), 'pollen-config-'));

  it('has the documented defaults', () => {
    const dir = dataDir();
    const config = loadConfig({ DATA_DIR: dir });
    expect(config).toMatchObject({
      nodeEnv: 'development', port: 4000, host: '127.0.0.1', mongodbUri: undefined, dataDir: dir,
      accessTokenTtlSeconds: 900, refreshTokenTtlSeconds: 30 * 86400, corsOrigins: [],
      maxUploadBytes: 20 * 1024 * 1024, logLevel: 'info',
    });
  });

  it('generates a development JWT secret once, kept with mode 0600', () => {
    const dir = dataDir();
    const first = loadConfig({ DATA_DIR: dir }).jwtSecret;
    expect(first.length).toBeGreaterThanOrEqual(32);
    expect(loadConfig({ DATA_DIR: dir }).jwtSecret).toBe(first);
    expect(readFileSync(path.join(dir, 'jwt-secret'), 'utf8').trim()).toBe(first);
    expect(statSync(path.join(dir, 'jwt-secret')).mode & 0o777).toBe(0o600);
  });

  it('requires a long JWT_SECRET in production', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', DATA_DIR: dataDir() })).toThrow(/JWT_SECRET is required/);
    expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: 's'.repeat(32) }).jwtSecret).toBe('s'.repeat(32));
  });

  it('reports every problem at once', () => {
    try {
      loadConfig({ PORT: '70000', MONGODB_URI: 'postgres://x', CORS_ORIGINS: 'not a url', MAX_UPLOAD_BYTES: '-1', DATA_DIR: dataDir() });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems.map((p) => p.split('=')[0])).toEqual(['PORT', 'MONGODB_URI', 'CORS_ORIGINS', 'MAX_UPLOAD_BYTES']);
    }
  });

  it('parses durations', () => {
    expect([parseDurationSeconds('900'), parseDurationSeconds('15m'), parseDurationSeconds('30d'), parseDurationSeconds('2h')])
      .toEqual([900, 900, 2_592_000, 7200]);
    expect([parseDurationSeconds('0'), parseDurationSeconds('1w'), parseDurationSeconds('-5m')]).toEqual([undefined, undefined, undefined]);
  });
});
