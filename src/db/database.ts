import mongoose from 'mongoose';
import path from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { startEmbeddedFerretDB, type EmbeddedFerretDB } from './embedded-ferretdb.js';

export interface Database {
  /** The embedded server, when Pollen started one. */
  readonly embedded: EmbeddedFerretDB | undefined;
  isReady(): Promise<boolean>;
  close(): Promise<void>;
}

const DEFAULT_DB_NAME = 'pollen';

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
      serverSelectionTimeoutMS: 5_000,
      dbName: databaseNameIn(uri) ?? DEFAULT_DB_NAME,
    });
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  logger.info({ database: mongoose.connection.name, embedded: Boolean(embedded) }, 'database connected');

  return {
    embedded,
    async isReady() {
      try {
        await mongoose.connection.db!.admin().command({ ping: 1 }, { timeoutMS: 2_000 });
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      await mongoose.disconnect();
      await embedded?.stop();
    },
  };
}

function databaseNameIn(uri: string): string | undefined {
  return /^mongodb(?:\+srv)?:\/\/[^/]+\/([^?]+)/.exec(uri)?.[1];
}

/** Creates every model's indexes; idempotent, run at each start. */
export async function ensureIndexes(models: Array<{ createIndexes(): Promise<unknown> }>): Promise<void> {
  for (const model of models) await model.createIndexes();
}
