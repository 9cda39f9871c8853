import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type NodeEnv = 'development' | 'production' | 'test';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  nodeEnv: NodeEnv;
  port: number;
  host: string;
  /** Unset: Pollen starts an embedded FerretDB under `dataDir`. */
  mongodbUri: string | undefined;
  /** Set: subscription events travel through Redis, so several instances can serve one API. */
  redisUrl: string | undefined;
  dataDir: string;
  jwtSecret: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  corsOrigins: string[];
  maxUploadBytes: number;
  maxJsonBodyBytes: number;
  logLevel: LogLevel;
  queryMaxDepth: number;
  queryMaxCost: number;
  /** Sign-in mutations (register, login, refreshToken, deleteAccount) per minute and client address. */
  signInRateLimit: number;
  /** Operations one graphql-ws socket may run at once. */
  maxSubscriptionsPerSocket: number;
  /** graphql-ws sockets one user may keep open on one instance. */
  maxSocketsPerUser: number;
  maxLocalSupernodes: number;
  /** What a SIMULATION job's Simulation Engine may use: Ray's CPUs, one virtual client's share, Ray's object store. */
  simulation: { cpus: number; clientCpus: number; clientGpus: number; objectStoreBytes: number };
  maxConcurrentJobs: number;
  /** How long a LOCAL or SIMULATION federation whose run completed waits for the next run of its kind and size. */
  warmFederationSeconds: number;
  nodeConnectTimeoutSeconds: number;
  roundTimeoutSeconds: number;
  /** How long a runner's claim on a job lasts unless renewed; a dead instance's jobs fail after it. */
  jobLeaseSeconds: number;
  /** The Python that has flwr (the project's .venv by default). */
  flowerPython: string;
  /** The address remote SuperNodes reach the projects' SuperLinks on (their Fleet API listens there). */
  fleetHost: string;
  /** Set: every job is mirrored as a run of this MLflow tracking server (its REST API). */
  mlflowTrackingUri: string | undefined;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
const MIN_PRODUCTION_SECRET_BYTES = 32;

/** Parses "900", "90s", "15m", "12h" or "30d" into seconds. */
export function parseDurationSeconds(text: string): number | undefined {
  const match = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!match) return undefined;
  const seconds = Number(match[1]) * DURATION_UNITS[match[2] || 's']!;
  return seconds > 0 && Number.isSafeInteger(seconds) ? seconds : undefined;
}

/** Reads and validates the environment; every problem is reported at once. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];

  const read = <T>(name: string, fallback: T, parse: (raw: string) => T | undefined, rule: string): T => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = parse(raw);
    if (value === undefined) {
      problems.push(`${name}=${JSON.stringify(raw)} is invalid: ${rule}`);
      return fallback;
    }
    return value;
  };
  const integer = (min: number, max: number) => (raw: string) => {
    const value = Number(raw);
    return Number.isInteger(value) && value >= min && value <= max ? value : undefined;
  };
  const oneOf = <T extends string>(values: readonly T[]) => (raw: string) =>
    values.includes(raw as T) ? (raw as T) : undefined;

  const nodeEnv = read<NodeEnv>('NODE_ENV', 'development', oneOf(['development', 'production', 'test']),
    'expected development, production or test');
  const port = read('PORT', 4000, integer(0, 65535), 'expected a port number from 0 to 65535');
  const host = read('HOST', '127.0.0.1', (raw) => raw.trim() || undefined, 'expected a host name or address');
  const mongodbUri = read<string | undefined>('MONGODB_URI', undefined,
    (raw) => (/^mongodb(\+srv)?:\/\/\S+$/.test(raw) ? raw : undefined),
    'expected a mongodb:// or mongodb+srv:// connection string');
  const redisUrl = read<string | undefined>('REDIS_URL', undefined,
    (raw) => (/^rediss?:\/\/\S+$/.test(raw) ? raw : undefined), 'expected a redis:// or rediss:// URL');
  const dataDir = path.resolve(env.DATA_DIR || '.pollen');
  const accessTokenTtlSeconds = read('ACCESS_TOKEN_TTL', 15 * 60, parseDurationSeconds,
    'expected a duration such as 900, 90s, 15m, 12h or 30d');
  const refreshTokenTtlSeconds = read('REFRESH_TOKEN_TTL', 30 * 86400, parseDurationSeconds,
    'expected a duration such as 900, 90s, 15m, 12h or 30d');
  const corsOrigins = read<string[]>('CORS_ORIGINS', [], (raw) => {
    const origins = raw.split(',').map((o) => o.trim()).filter(Boolean);
    return origins.every((o) => /^https?:\/\/[^/\s]+$/.test(o)) ? origins : undefined;
  }, 'expected a comma-separated list of origins such as https://app.example.com');
  const maxUploadBytes = read('MAX_UPLOAD_BYTES', 20 * 1024 * 1024, integer(1024, 1024 ** 3),
    'expected a byte count from 1024 to 1073741824');
  const maxJsonBodyBytes = read('MAX_JSON_BODY_BYTES', 1024 * 1024, integer(1024, 64 * 1024 ** 2),
    'expected a byte count from 1024 to 67108864');
  const logLevel = read<LogLevel>('LOG_LEVEL', nodeEnv === 'test' ? 'warn' : 'info', oneOf(LOG_LEVELS),
    `expected one of ${LOG_LEVELS.join(', ')}`);
  const queryMaxDepth = read('QUERY_MAX_DEPTH', 12, integer(2, 100), 'expected an integer from 2 to 100');
  const queryMaxCost = read('QUERY_MAX_COST', 5000, integer(10, 1_000_000), 'expected an integer from 10 to 1000000');
  const signInRateLimit = read('SIGN_IN_RATE_LIMIT', 30, integer(1, 1_000_000), 'expected an integer from 1 to 1000000 (per minute)');
  const maxSubscriptionsPerSocket = read('WS_MAX_SUBSCRIPTIONS_PER_SOCKET', 100, integer(1, 100_000),
    'expected an integer from 1 to 100000');
  const maxSocketsPerUser = read('WS_MAX_SOCKETS_PER_USER', 50, integer(1, 1_000_000), 'expected an integer from 1 to 1000000');

  const maxLocalSupernodes = read('MAX_LOCAL_SUPERNODES', 8, integer(2, 64), 'expected an integer from 2 to 64');
  // Half the cores by default: Pollen, its database and Ray's own services keep the rest.
  const simulationCpus = read('SIMULATION_CPUS', Math.max(1, Math.floor(availableParallelism() / 2)), integer(1, 1024),
    'expected an integer from 1 to 1024');
  const simulationClientCpus = read('SIMULATION_CLIENT_CPUS', 1, integer(1, 1024), 'expected an integer from 1 to 1024');
  const simulationClientGpus = read('SIMULATION_CLIENT_GPUS', 0, (raw) => {
    const value = Number(raw);
    return Number.isFinite(value) && value >= 0 && value <= 64 ? value : undefined;
  }, 'expected a number from 0 to 64 (a fraction shares a GPU)');
  const simulationObjectStoreMb = read('SIMULATION_OBJECT_STORE_MB', 256, integer(80, 1_048_576),
    'expected an integer from 80 (Ray\'s minimum) to 1048576');
  if (simulationClientCpus > simulationCpus) {
    problems.push(`SIMULATION_CLIENT_CPUS=${simulationClientCpus} is more than SIMULATION_CPUS=${simulationCpus}: no virtual client could run`);
  }
  const maxConcurrentJobs = read('MAX_CONCURRENT_JOBS', 1, integer(0, 64),
    'expected an integer from 0 (an instance that only serves the API) to 64');
  const warmFederationSeconds = read('WARM_FEDERATION', 120, (raw) => (raw.trim() === '0' ? 0 : parseDurationSeconds(raw)),
    'expected a duration such as 120, 90s or 5m (0: stop each federation with its run)');
  const nodeConnectTimeoutSeconds = read('NODE_CONNECT_TIMEOUT', 60, parseDurationSeconds,
    'expected a duration such as 60, 90s or 2m');
  const roundTimeoutSeconds = read('ROUND_TIMEOUT', 600, parseDurationSeconds, 'expected a duration such as 600, 90s or 10m');
  const jobLeaseSeconds = read('JOB_LEASE', 30, parseDurationSeconds, 'expected a duration such as 30, 45s or 2m');
  const fleetHost = read('FLEET_HOST', '127.0.0.1', (raw) => (/^[0-9A-Za-z.:-]+$/.test(raw.trim()) ? raw.trim() : undefined),
    'expected the IP address (or host name) of this host that node hosts reach');
  const mlflowTrackingUri = read<string | undefined>('MLFLOW_TRACKING_URI', undefined,
    (raw) => (/^https?:\/\/[^/\s]+(\/\S*)?$/.test(raw.trim()) ? raw.trim().replace(/\/+$/, '') : undefined),
    'expected the http:// or https:// URL of an MLflow tracking server');
  const flowerPython = env.FLOWER_PYTHON || fileURLToPath(new URL('../.venv/bin/python', import.meta.url));

  const jwtSecretFromEnv = env.JWT_SECRET;
  if (nodeEnv === 'production') {
    if (!jwtSecretFromEnv) {
      problems.push('JWT_SECRET is required when NODE_ENV=production');
    } else if (Buffer.byteLength(jwtSecretFromEnv) < MIN_PRODUCTION_SECRET_BYTES) {
      problems.push(`JWT_SECRET must be at least ${MIN_PRODUCTION_SECRET_BYTES} bytes when NODE_ENV=production`);
    }
  }

  if (problems.length > 0) throw new ConfigError(problems);

  return {
    nodeEnv, port, host, mongodbUri, redisUrl, dataDir,
    jwtSecret: jwtSecretFromEnv || developmentJwtSecret(dataDir),
    accessTokenTtlSeconds, refreshTokenTtlSeconds, corsOrigins,
    maxUploadBytes, maxJsonBodyBytes, logLevel, queryMaxDepth, queryMaxCost, signInRateLimit, maxSubscriptionsPerSocket, maxSocketsPerUser,
    maxLocalSupernodes, maxConcurrentJobs,
    simulation: {
      cpus: simulationCpus, clientCpus: simulationClientCpus, clientGpus: simulationClientGpus,
      objectStoreBytes: simulationObjectStoreMb * 1024 * 1024,
    }, warmFederationSeconds, nodeConnectTimeoutSeconds, roundTimeoutSeconds, jobLeaseSeconds, flowerPython,
    fleetHost, mlflowTrackingUri,
  };
}

/** Outside production a secret is generated once and kept, so tokens survive restarts. */
function developmentJwtSecret(dataDir: string): string {
  const file = path.join(dataDir, 'jwt-secret');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const secret = randomBytes(48).toString('base64url');
  try {
    writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (error) {
    // Another instance sharing DATA_DIR wrote it first: use theirs.
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return readFileSync(file, 'utf8').trim();
    throw error;
  }
}
