import mongoose from 'mongoose';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { isDatabaseUnavailableError } from '../errors.js';
import { startEmbeddedFerretDB, type EmbeddedFerretDB } from './embedded-ferretdb.js';

export interface Database {
  /** The embedded server, when Pollen started one. */
  readonly embedded: EmbeddedFerretDB | undefined;
  /** Whether the database answers a ping now, and if not, why (for /readyz). */
  readiness(): Promise<{ ready: true } | { ready: false; reason: string }>;
  close(): Promise<void>;
}

const DEFAULT_DB_NAME = 'pollen';
/**
 * How long an operation waits for a reachable database before it fails. Mongoose queues nothing
 * (bufferCommands: false), so while the database is down every request fails after at most this
 * long, as DATABASE_UNAVAILABLE, and the driver reconnects by itself once the database is back.
 */
const SERVER_SELECTION_TIMEOUT_MS = 5_000;
const PING_TIMEOUT_MS = 2_000;
const MIN_POOL_SIZE = 10;

/** Connects mongoose to MONGODB_URI, or to an embedded FerretDB when it is unset. */
export async function connectDatabase(config: Config, logger: Logger): Promise<Database> {
  const embedded = config.mongodbUri
    ? undefined
    : await startEmbeddedFerretDB(path.join(config.dataDir, 'ferretdb'), logger);
  const uri = config.mongodbUri ?? `${embedded!.uri}${DEFAULT_DB_NAME}`;
  try {
    await mongoose.connect(uri, {
      // Indexes are created explicitly at start (see ensureIndexes), not lazily per model.
      autoIndex: false,
      autoCreate: false,
      bufferCommands: false,
      serverSelectionTimeoutMS: SERVER_SELECTION_TIMEOUT_MS,
      // Kept open ahead of bursts: opening connections one by one while the database is slow to
      // accept them held queries up for 1–2 s when a burst of requests arrived.
      minPoolSize: MIN_POOL_SIZE,
      dbName: databaseNameIn(uri) ?? DEFAULT_DB_NAME,
    });
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  logger.info({ database: mongoose.connection.name, embedded: Boolean(embedded) }, 'database connected');
  const connection = mongoose.connection;
  let closing = false;
  const onDisconnected = () => {
    if (!closing) logger.warn('database connection lost; requests fail with DATABASE_UNAVAILABLE until it is back');
  };
  const onReconnected = () => logger.info('database connection restored');
  // Mongoose emits 'error' only when someone listens; listening keeps a stray one from ending the process.
  const onError = (error: unknown) => logger.warn({ err: error }, 'database connection error');
  connection.on('disconnected', onDisconnected).on('reconnected', onReconnected).on('error', onError);

  return {
    embedded,
    async readiness() {
      try {
        await connection.db!.admin().command({ ping: 1 }, { timeoutMS: PING_TIMEOUT_MS });
        return { ready: true };
      } catch (error) {
        return { ready: false, reason: unreachableReason(error) };
      }
    },
    async close() {
      closing = true;
      await mongoose.disconnect();
      connection.off('disconnected', onDisconnected).off('reconnected', onReconnected).off('error', onError);
      await embedded?.stop();
    },
  };
}

/** Why a ping failed, in words for /readyz (without the database's address). */
function unreachableReason(error: unknown): string {
  const { name, message } = error as { name?: string; message?: string };
  if (/ECONNREFUSED/.test(message ?? '')) return 'The database refused the connection (is it running?).';
  if (name === 'MongoOperationTimeoutError' || /timed out/i.test(message ?? '')) {
    return `The database did not answer a ping within ${PING_TIMEOUT_MS / 1000} s.`;
  }
  return `The database cannot be reached (${name ?? 'unknown error'}).`;
}

function databaseNameIn(uri: string): string | undefined {
  return /^mongodb(?:\+srv)?:\/\/[^/]+\/([^?]+)/.exec(uri)?.[1];
}

/** Creates every model's indexes; idempotent, run at each start. */
export async function ensureIndexes(models: Array<{ createIndexes(): Promise<unknown> }>): Promise<void> {
  for (const model of models) await model.createIndexes();
}

export interface RetryOptions {
  /** Ends the retries: the next failure is thrown. */
  signal?: AbortSignal;
  /** Called once, at the first failure, to say what waits (a log line). */
  onUnavailable?: (error: unknown) => void;
  intervalMs?: number;
}

/**
 * Runs `work` and, while it fails because the database is unavailable, runs it again every
 * `intervalMs` until it succeeds or `signal` aborts; any other error is thrown at once. For the
 * runner's writes that must not be lost to an outage (a job's outcome, its metrics): `work` must
 * be safe to repeat.
 */
export async function retryWhileDatabaseUnavailable<T>(work: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await work();
    } catch (error) {
      if (!isDatabaseUnavailableError(error) || options.signal?.aborted) throw error;
      if (attempt === 0) options.onUnavailable?.(error);
      await sleep(options.intervalMs ?? 1_000, undefined, { signal: options.signal }).catch(() => undefined);
    }
  }
}
