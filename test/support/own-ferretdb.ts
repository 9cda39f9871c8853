import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { startEmbeddedFerretDB, type EmbeddedFerretDB } from '../../src/db/embedded-ferretdb.js';

/**
 * A FerretDB of a test's own (not the run's shared one), which the test may stop and start again
 * on the same port and the same SQLite store, as an operator restarting the database would.
 */
export class OwnFerretDB {
  private constructor(readonly storeDir: string, readonly port: number, private server: EmbeddedFerretDB | undefined) {}

  static async start(options: { disablePushdown?: boolean } = {}): Promise<OwnFerretDB> {
    const storeDir = mkdtempSync(path.join(tmpdir(), 'pollen-test-own-db-'));
    try {
      const server = await startEmbeddedFerretDB(storeDir, pino({ level: 'silent' }), options);
      return new OwnFerretDB(storeDir, Number(new URL(server.uri).port), server);
    } catch (error) {
      rmSync(storeDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** mongodb://127.0.0.1:PORT/ (the same across restarts). */
  get uri(): string {
    return `mongodb://127.0.0.1:${this.port}/`;
  }

  get pid(): number | undefined {
    return this.server?.pid;
  }

  async stop(): Promise<void> {
    await this.server?.stop();
    this.server = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    this.server = await startEmbeddedFerretDB(this.storeDir, pino({ level: 'silent' }), { port: this.port });
  }

  /** Stops it and deletes its store. */
  async remove(): Promise<void> {
    await this.stop();
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}
