import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { TestProject } from 'vitest/node';
import { startEmbeddedFerretDB } from '../../src/db/embedded-ferretdb.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** mongodb://127.0.0.1:PORT/ of the run's FerretDB; each test picks its own database. */
    mongoUri: string;
  }
}

/** One real FerretDB per test run, on a fresh store. */
export default async function setup(project: TestProject) {
  const storeDir = await mkdtemp(path.join(tmpdir(), 'pollen-test-db-'));
  const ferretdb = await startEmbeddedFerretDB(storeDir, pino({ level: 'warn' }));
  project.provide('mongoUri', ferretdb.uri);
  return async () => {
    await ferretdb.stop();
    await rm(storeDir, { recursive: true, force: true });
  };
}
