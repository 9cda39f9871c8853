import { randomUUID } from 'node:crypto';
import { retryWhileDatabaseUnavailable } from '../db/database.js';
import { WorkQueue } from '../db/work-queue.js';
import type { Logger } from '../logger.js';
import type { RunOutcome } from '../modules/training/job.lifecycle.js';
import type { TrainingJob } from '../modules/training/training-job.model.js';
import { runnerWakeUps } from '../modules/training/training.events.js';
import type { TrainingService } from '../modules/training/training.service.js';
import type { PubSub } from '../pubsub/pubsub.js';

/** A Flower run that a launcher started for a job. */
export interface JobExecution {
  /** Settles when the run ends by itself. */
  readonly outcome: Promise<RunOutcome>;
  /** Stops the run in Flower and tears every process down. */
  stop(): Promise<void>;
}

export type JobLauncher = (job: TrainingJob) => Promise<JobExecution>;

interface ActiveJob {
  launching: Promise<JobExecution>;
  /** Set once this runner ends the job itself (a cancel, or Pollen shutting down): resolves when it has. */
  ending?: Promise<void>;
  /** Resolves when `ending` is set. */
  endRequested: Promise<void>;
  requestEnd(): void;
}

export interface RunnerSettings { maxConcurrentJobs: number; leaseMs?: number; pollMs?: number }

const DEFAULT_LEASE_MS = 30_000;
const DEFAULT_POLL_MS = 2_000;

/**
 * Runs queued training jobs, at most `maxConcurrentJobs` at once, holding each with a lease it
 * renews while the job runs. It reports what happens to the job's lifecycle (claimed, run ended,
 * stopped) and never writes a status itself.
 */
export class TrainingRunner {
  readonly instanceId = randomUUID();
  private readonly active = new Map<string, ActiveJob>();
  private readonly queue: WorkQueue<TrainingJob, { cancelJobId?: string }>;
  /** Aborted at stop: writes waiting for the database give up. */
  private readonly halt = new AbortController();

  constructor(
    private readonly training: TrainingService,
    pubsub: PubSub,
    private readonly launch: JobLauncher,
    private readonly settings: RunnerSettings,
    private readonly logger: Logger,
  ) {
    const lifecycle = training.lifecycle;
    this.queue = new WorkQueue({
      claimNext: () => lifecycle.claimNext(),
      idOf: (job) => job._id.toHexString(),
      run: (job) => this.run(job),
      renew: async (running) => {
        // A cancel published on another instance reaches this one through the database.
        const cancelled = await lifecycle.renewLeases([...running].filter((id) => this.active.has(id) && !this.active.get(id)!.ending),
          this.lease());
        for (const id of cancelled) void this.end(id, 'cancel');
      },
      reconcile: (running) => lifecycle.reconcile(running, this.leaseMs),
    }, {
      concurrency: settings.maxConcurrentJobs,
      pollMs: settings.pollMs ?? DEFAULT_POLL_MS,
      renewMs: this.leaseMs / 3,
      reconcileMs: this.leaseMs,
      wakeUps: runnerWakeUps,
      onWakeUp: ({ cancelJobId }) => {
        if (cancelJobId && this.active.has(cancelJobId)) void this.end(cancelJobId, 'cancel');
      },
    }, pubsub, logger);
  }

  private get leaseMs(): number {
    return this.settings.leaseMs ?? DEFAULT_LEASE_MS;
  }

  private lease() {
    return { owner: this.instanceId, expiresAt: new Date(Date.now() + this.leaseMs) };
  }

  start(): Promise<void> {
    return this.queue.start();
  }

  /** Stops taking work and ends every running job (FAILED: a run cannot outlive its runner). */
  async stop(): Promise<void> {
    this.halt.abort();
    await this.queue.stop();
    await Promise.all([...this.active.keys()].map((id) => this.end(id, 'shutdown')));
    await this.queue.drained();
  }

  private async run(claimed: TrainingJob): Promise<void> {
    const id = claimed._id.toHexString();
    // Claimed: from here on only this runner can start the job, so the write waits out an outage.
    const job = await this.durably(id, 'mark the claimed job STARTING', () => this.training.lifecycle.claimed(id, this.lease()));
    let requestEnd!: () => void;
    const endRequested = new Promise<void>((resolve) => (requestEnd = resolve));
    const entry: ActiveJob = { launching: this.launch(job), endRequested, requestEnd };
    this.active.set(id, entry);
    this.logger.info({ jobId: id }, 'training job claimed');
    try {
      let execution: JobExecution;
      try {
        execution = await entry.launching;
      } catch (error) {
        if (entry.ending) return; // end() records how it ended
        this.logger.warn({ err: error, jobId: id }, 'training job could not start');
        await this.record(id, 'record that the job could not start', () => this.training.lifecycle.launchFailed(id, error as Error));
        return;
      }
      const outcome = await Promise.race([execution.outcome, entry.endRequested.then(() => undefined)]);
      if (outcome && !entry.ending) {
        await this.record(id, `record that the job ended ${outcome.status}`, () => this.training.lifecycle.runEnded(id, outcome));
      }
    } finally {
      await entry.ending;
      this.active.delete(id);
      this.training.forgetLogSequence(id);
    }
  }

  /** Stops a job this runner holds, because it was cancelled or because Pollen stops. */
  private end(id: string, why: 'cancel' | 'shutdown'): Promise<void> {
    const entry = this.active.get(id);
    if (!entry) return Promise.resolve();
    entry.ending ??= (async () => {
      entry.requestEnd();
      // A job still starting is stopped once its processes exist.
      const execution = await entry.launching.catch(() => undefined);
      await execution?.stop();
      await this.record(id, `record that the job was stopped (${why})`, () => this.training.lifecycle.stopped(id, why));
    })();
    return entry.ending;
  }

  /** Runs a write that must not be lost, again and again while the database is unavailable (until stop). */
  private durably<T>(jobId: string, what: string, work: () => Promise<T>): Promise<T> {
    return retryWhileDatabaseUnavailable(work, {
      signal: this.halt.signal,
      onUnavailable: (error) => this.logger.warn({ err: error, jobId }, `database unavailable: will ${what} once it is back`),
    });
  }

  /** Records how a job went; never rejects (a job left unfinished is failed by reconcile after its lease). */
  private async record(id: string, what: string, work: () => Promise<unknown>): Promise<void> {
    try {
      await this.durably(id, what, work);
    } catch (error) {
      this.logger.error({ err: error, jobId: id }, `could not ${what}`);
    }
  }
}
