import { isDatabaseUnavailableError } from '../errors.js';
import type { Logger } from '../logger.js';

const REASON_LOG_LINES = 8;
const FLUSH_RETRY_MS = 1_000;

/**
 * What a run wrote: the ServerApp's lines, stored in order a batch at a time (kept through a
 * database outage, up to the last `kept` lines, until the database is back), and the last lines of
 * every process, from which a failure's reason quotes what matters.
 */
export class RunOutput {
  private pending: Array<{ at: Date; line: string }> = [];
  /** The lines being stored now, if any; one write at a time keeps them in order. */
  private storing?: Promise<void>;
  private waitingForDatabase = false;
  private readonly recent: string[] = [];

  constructor(
    private readonly store: (lines: Array<{ at: Date; line: string }>) => Promise<void>,
    private readonly kept: number,
    private readonly logger: Logger,
  ) {}

  /** A line of the run's own output: stored, and remembered for reasons. */
  add(line: string, at: Date): void {
    this.pending.push({ at, line });
    this.remember(line);
  }

  /** A line of a process around the run (the SuperLink, a SuperNode): only remembered for reasons. */
  remember(line: string): void {
    if (!line.trim()) return;
    this.recent.push(line.trim());
    if (this.recent.length > 200) this.recent.splice(0, 100);
  }

  /** `reason`, followed by the last meaningful lines (errors, tracebacks) or else the last lines. */
  reasonWithLog(reason: string): string {
    const meaningful = this.recent.filter((line) => /error|exception|traceback|failed|raise|refused/i.test(line));
    const tail = (meaningful.length > 0 ? meaningful : this.recent).slice(-REASON_LOG_LINES);
    return tail.length > 0 ? `${reason} Last log lines:\n${tail.join('\n')}` : reason;
  }

  get isStoring(): boolean {
    return this.storing !== undefined;
  }

  /** Stores the pending lines; while the database is unavailable they wait for the next flush. */
  async flush(): Promise<void> {
    while (this.storing) await this.storing;
    const lines = this.pending;
    if (lines.length === 0) return;
    this.pending = [];
    this.storing = this.store(lines).then(() => {
      if (this.waitingForDatabase) this.logger.info({ lines: lines.length }, 'stored the log lines that waited for the database');
      this.waitingForDatabase = false;
    }, (error) => {
      if (!isDatabaseUnavailableError(error)) return this.logger.error({ err: error }, 'could not store log lines');
      if (!this.waitingForDatabase) this.logger.warn({ err: error }, 'database unavailable: log lines wait until it is back');
      this.waitingForDatabase = true;
      this.pending = [...lines, ...this.pending].slice(-this.kept);
    }).finally(() => (this.storing = undefined));
    await this.storing;
  }

  /** Stores every pending line, retrying while the database is unavailable, until `halt` aborts. */
  async flushAll(halt: AbortSignal): Promise<void> {
    await this.flush();
    while (this.pending.length > 0 && !halt.aborted) {
      await new Promise((resolve) => setTimeout(resolve, FLUSH_RETRY_MS));
      await this.flush();
    }
  }
}
