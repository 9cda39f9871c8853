import type { Logger } from '../logger.js';
import type { PubSub, Topic } from '../pubsub/pubsub.js';
import { isDatabaseUnavailableError } from '../errors.js';

/** What a queue of work stored in the database needs from its kind of work (training jobs, deployments). */
export interface Work<T> {
  /** The next item that can start now, claimed for this worker (exactly one worker gets each); undefined when none. */
  claimNext(): Promise<T | undefined>;
  idOf(item: T): string;
  /** Runs a claimed item to its end; never rejects (an item that fails is recorded as failed). */
  run(item: T): Promise<void>;
  /** Keeps this worker's hold on the items it runs (a lease, a heartbeat). */
  renew(running: ReadonlySet<string>): Promise<void>;
  /** Ends what workers that died left behind. */
  reconcile(running: ReadonlySet<string>): Promise<void>;
}

export interface WorkQueueSettings<W> {
  /** Most items run at once by this worker; 0 takes none. */
  concurrency: number;
  /** Looks for queued work this often, besides wake-ups (which other instances send through the event bus). */
  pollMs: number;
  renewMs: number;
  reconcileMs: number;
  wakeUps: Topic<W>;
  /** A wake-up can carry a request about running work (a cancel); queued work is looked for after each. */
  onWakeUp?: (payload: W) => void;
}

/**
 * A worker for work that waits in the database: it claims queued items, runs a few at a time,
 * renews its hold on them while they run, and reconciles what dead workers left. Periodic tasks
 * that meet a database outage log it once and try again at their next tick.
 */
export class WorkQueue<T, W = unknown> {
  private readonly running = new Map<string, Promise<void>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private wakeUps?: AsyncIterableIterator<W>;
  private filling = false;
  private stopped = false;
  private databaseDown = false;

  constructor(
    private readonly work: Work<T>,
    private readonly settings: WorkQueueSettings<W>,
    private readonly pubsub: PubSub,
    private readonly logger: Logger,
  ) {}

  /** The ids of the items this worker runs now. */
  get runningIds(): ReadonlySet<string> {
    return new Set(this.running.keys());
  }

  async start(): Promise<void> {
    await this.periodic('reconcile', () => this.work.reconcile(this.runningIds));
    this.wakeUps = this.pubsub.subscribe(this.settings.wakeUps);
    void (async () => {
      for await (const payload of this.wakeUps!) {
        this.settings.onWakeUp?.(payload);
        void this.fill();
      }
    })();
    this.timers.push(setInterval(() => void this.fill(), this.settings.pollMs));
    this.timers.push(setInterval(() => void this.periodic('renew', () => this.work.renew(this.runningIds)), this.settings.renewMs));
    this.timers.push(setInterval(() => void this.periodic('reconcile', () => this.work.reconcile(this.runningIds)), this.settings.reconcileMs));
    void this.fill();
  }

  /** Takes no more work; what runs is the owner's to end. Resolves once every run has returned. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    await this.wakeUps?.return?.();
  }

  /** Resolves once every run has returned. */
  async drained(): Promise<void> {
    await Promise.all(this.running.values());
  }

  private async fill(): Promise<void> {
    if (this.filling || this.stopped) return;
    this.filling = true;
    try {
      while (!this.stopped && this.running.size < this.settings.concurrency) {
        const item = await this.work.claimNext();
        if (!item) break;
        const id = this.work.idOf(item);
        const run = this.work.run(item)
          .catch((error) => this.logger.error({ err: error, id }, 'a run ended badly'))
          .finally(() => {
            this.running.delete(id);
            void this.fill();
          });
        this.running.set(id, run);
      }
      this.noteSuccess();
    } catch (error) {
      this.noteFailure(error, 'take queued work');
    } finally {
      this.filling = false;
    }
  }

  private async periodic(what: 'renew' | 'reconcile', task: () => Promise<void>): Promise<void> {
    try {
      await task();
      this.noteSuccess();
    } catch (error) {
      this.noteFailure(error, what);
    }
  }

  /** A database outage is logged once (the timers try again); anything else each time. */
  private noteFailure(error: unknown, what: string): void {
    if (!isDatabaseUnavailableError(error)) {
      this.logger.error({ err: error }, `could not ${what}`);
      return;
    }
    if (!this.databaseDown) this.logger.warn({ err: error }, 'database unavailable: the worker keeps its work and tries again');
    this.databaseDown = true;
  }

  private noteSuccess(): void {
    if (!this.databaseDown) return;
    this.databaseDown = false;
    this.logger.info('database back: the worker carries on');
  }
}
