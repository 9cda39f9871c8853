import { randomUUID } from 'node:crypto';
import { ClaimModel } from '../db/claims.js';
import { retryWhileDatabaseUnavailable } from '../db/database.js';
import { isDatabaseUnavailableError } from '../errors.js';
import type { Logger } from '../logger.js';
import { isFinished, TrainingJobModel, TrainingJobStatus, type TrainingJob } from '../modules/training/training-job.model.js';
import { claimStart, remoteWaitReason, runnerWakeUps, type TrainingService } from '../modules/training/training.service.js';
import type { PubSub } from '../pubsub/pubsub.js';

/** A Flower run that a launcher started for a job. */
export interface JobExecution {
  /** Settles when the run ends by itself. */
  readonly outcome: Promise<{ status: TrainingJobStatus.COMPLETED | TrainingJobStatus.FAILED; reason: string | null }>;
  /** Stops the run in Flower and tears every process down. */
  stop(): Promise<void>;
}

export type JobLauncher = (job: TrainingJob) => Promise<JobExecution>;

interface ActiveJob {
  launching: Promise<JobExecution>;
  /** Set once the job is being ended: by this runner (cancel or shutdown), or by itself. */
  stopping?: 'cancel' | 'Pollen shut down' | 'finished';
}

export interface RunnerSettings { maxConcurrentJobs: number; leaseMs?: number; pollMs?: number }

const DEFAULT_LEASE_MS = 30_000;
const DEFAULT_POLL_MS = 2_000;

/**
 * Takes queued jobs from MongoDB and runs them, at most `maxConcurrentJobs` at once. A job is
 * claimed by exactly one runner (a unique claim, see db/claims.ts) and held with a lease that is
 * renewed while it runs; a job whose lease ran out belongs to an instance that died.
 */
export class TrainingRunner {
  readonly instanceId = randomUUID();
  private readonly active = new Map<string, ActiveJob>();
  private readonly timers: NodeJS.Timeout[] = [];
  private wakeUps?: AsyncIterableIterator<{ cancelJobId?: string }>;
  private filling = false;
  private stopped = false;
  /** Aborted at stop: writes waiting for the database give up. */
  private readonly halt = new AbortController();
  /** Set during a database outage, which is logged once rather than at every tick of every timer. */
  private databaseDown = false;

  constructor(
    private readonly training: TrainingService,
    private readonly pubsub: PubSub,
    private readonly launch: JobLauncher,
    private readonly settings: RunnerSettings,
    private readonly logger: Logger,
  ) {}

  private get leaseMs(): number {
    return this.settings.leaseMs ?? DEFAULT_LEASE_MS;
  }

  async start(): Promise<void> {
    await this.reconcile();
    this.wakeUps = this.pubsub.subscribe(runnerWakeUps);
    void this.listen(this.wakeUps);
    this.timers.push(setInterval(() => void this.fillSlots(), this.settings.pollMs ?? DEFAULT_POLL_MS));
    this.timers.push(setInterval(() => void this.renewLeases(), this.leaseMs / 3));
    this.timers.push(setInterval(() => void this.reconcile(), this.leaseMs));
    void this.fillSlots();
  }

  /** Stops taking work and ends every running job (FAILED: a run cannot outlive its runner). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.halt.abort();
    for (const timer of this.timers) clearInterval(timer);
    await this.wakeUps?.return?.();
    await Promise.all([...this.active.keys()].map((id) => this.end(id, 'Pollen shut down')));
  }

  private async listen(wakeUps: AsyncIterableIterator<{ cancelJobId?: string }>): Promise<void> {
    for await (const wakeUp of wakeUps) {
      if (wakeUp.cancelJobId && this.active.has(wakeUp.cancelJobId)) void this.end(wakeUp.cancelJobId, 'cancel');
      else void this.fillSlots();
    }
  }

  private async fillSlots(): Promise<void> {
    if (this.filling || this.stopped) return;
    this.filling = true;
    try {
      while (!this.stopped && this.active.size < this.settings.maxConcurrentJobs) {
        const next = await this.claimNext();
        if (!next) break;
        await this.run(next);
      }
    } catch (error) {
      this.noteFailure(error, () => this.logger.error({ err: error }, 'could not take queued jobs'));
    } finally {
      this.filling = false;
    }
  }

  private async claimNext(): Promise<TrainingJob | undefined> {
    const queued = await TrainingJobModel.find({ status: TrainingJobStatus.QUEUED }).sort({ createdAt: 1, _id: 1 }).limit(20)
      .lean<TrainingJob[]>().exec();
    for (const job of queued) {
      if (await remoteWaitReason(job)) continue;
      if (await claimStart(job)) return job;
    }
    return undefined;
  }

  private async run(queued: TrainingJob): Promise<void> {
    const id = queued._id.toHexString();
    // Claimed: from here on only this runner can start the job, so the write waits out an outage.
    const job = await this.durably(id, 'mark the claimed job STARTING', () => this.training.update(id, {
      status: TrainingJobStatus.STARTING, startedAt: new Date(),
      lease: { owner: this.instanceId, expiresAt: new Date(Date.now() + this.leaseMs) },
    }));
    const entry: ActiveJob = { launching: this.launch(job) };
    this.active.set(id, entry);
    this.logger.info({ jobId: id }, 'training job claimed');
    let execution: JobExecution;
    try {
      execution = await entry.launching;
    } catch (error) {
      if (entry.stopping) return; // end() finishes it
      this.active.delete(id);
      this.logger.warn({ err: error, jobId: id }, 'training job could not start');
      await this.finishDurably(id, TrainingJobStatus.FAILED, `Could not start: ${(error as Error).message}`);
      return;
    }
    void execution.outcome.then(async ({ status, reason }) => {
      if (entry.stopping || !this.active.has(id)) return;
      // Still ours until its outcome is stored, which may have to wait for the database.
      entry.stopping = 'finished';
      await this.finishDurably(id, status, reason);
      this.active.delete(id);
      this.training.forgetLogSequence(id);
      void this.fillSlots();
    });
  }

  /** Logs a failed periodic task: a database outage once (the timers try again), anything else each time. */
  private noteFailure(error: unknown, log: () => void): void {
    if (!isDatabaseUnavailableError(error)) return log();
    if (!this.databaseDown) this.logger.warn({ err: error }, 'database unavailable: the runner keeps its jobs and tries again');
    this.databaseDown = true;
  }

  private noteSuccess(): void {
    if (!this.databaseDown) return;
    this.databaseDown = false;
    this.logger.info('database back: the runner carries on');
  }

  /** Runs a write that must not be lost, again and again while the database is unavailable (until stop). */
  private durably<T>(jobId: string, what: string, work: () => Promise<T>): Promise<T> {
    return retryWhileDatabaseUnavailable(work, {
      signal: this.halt.signal,
      onUnavailable: (error) => this.logger.warn({ err: error, jobId }, `database unavailable: will ${what} once it is back`),
    });
  }

  /** Stores how a job ended; never rejects (a job left unfinished is failed by reconcile after its lease). */
  private async finishDurably(id: string, status: TrainingJobStatus, reason: string | null): Promise<void> {
    try {
      await this.durably(id, `record that the job ended ${status}`, () => this.training.finish(id, status, reason));
    } catch (error) {
      this.logger.error({ err: error, jobId: id, status, reason }, 'could not record how a training job ended');
    }
  }

  /** Stops a job this runner holds, because it was cancelled or because Pollen stops. */
  private async end(id: string, why: 'cancel' | 'Pollen shut down'): Promise<void> {
    const entry = this.active.get(id);
    if (!entry || entry.stopping) return;
    entry.stopping = why;
    // A job still starting is stopped once its processes exist.
    const execution = await entry.launching.catch(() => undefined);
    await execution?.stop();
    let round: number | null | undefined;
    try {
      round = (await this.durably(id, 'read the job', () => this.training.get(id)))?.currentRound;
    } catch (error) {
      this.logger.warn({ err: error, jobId: id }, 'could not read the round a job ended at');
    }
    if (why === 'cancel') {
      await this.finishDurably(id, TrainingJobStatus.CANCELLED, `Cancelled at round ${round ?? 0}.`);
    } else {
      await this.finishDurably(id, TrainingJobStatus.FAILED, `Interrupted at round ${round ?? 0}: Pollen shut down.`);
    }
    this.active.delete(id);
    this.training.forgetLogSequence(id);
  }

  private async renewLeases(): Promise<void> {
    const expiresAt = new Date(Date.now() + this.leaseMs);
    for (const [id, entry] of this.active) {
      if (entry.stopping) continue;
      try {
        await TrainingJobModel.updateOne({ _id: id }, { $set: { lease: { owner: this.instanceId, expiresAt } } }).exec();
        // A cancel published on another instance reaches this one through the database too.
        const job = await TrainingJobModel.findById(id, { cancelRequestedAt: 1 }).lean<TrainingJob>().exec();
        if (job?.cancelRequestedAt) void this.end(id, 'cancel');
        this.noteSuccess();
      } catch (error) {
        this.noteFailure(error, () => this.logger.warn({ err: error, jobId: id }, 'could not renew lease'));
      }
    }
  }

  /**
   * Jobs left STARTING or RUNNING by an instance that stopped renewing its lease cannot be resumed
   * (their Flower processes died with it): they fail, keeping their metrics and logs.
   */
  private async reconcile(): Promise<void> {
    try {
      const now = new Date();
      const orphans = await TrainingJobModel.find({
        status: { $in: [TrainingJobStatus.STARTING, TrainingJobStatus.RUNNING] },
        $or: [{ lease: null }, { 'lease.expiresAt': { $lt: now } }],
      }).lean<TrainingJob[]>().exec();
      for (const job of orphans) {
        if (this.active.has(job._id.toHexString()) || isFinished(job.status)) continue;
        await this.training.finish(job._id.toHexString(), TrainingJobStatus.FAILED,
          `Interrupted by a restart at round ${job.currentRound ?? 0}: the Pollen instance running it stopped.`);
      }
      await this.reconcileClaimedButQueued(now);
      this.noteSuccess();
    } catch (error) {
      this.noteFailure(error, () => this.logger.warn({ err: error }, 'could not reconcile training jobs'));
    }
  }

  /** A runner that died between claiming a job and marking it STARTING left it QUEUED for good. */
  private async reconcileClaimedButQueued(now: Date): Promise<void> {
    const queued = await TrainingJobModel.find({ status: TrainingJobStatus.QUEUED }, { _id: 1 }).lean<TrainingJob[]>().exec();
    if (queued.length === 0) return;
    const stale = await ClaimModel.find({
      _id: { $in: queued.map((job) => `training-job-start:${job._id.toHexString()}`) },
      claimedAt: { $lt: new Date(now.getTime() - this.leaseMs) },
    }).lean().exec();
    for (const claimed of stale) {
      const id = claimed._id.slice('training-job-start:'.length);
      const job = await this.training.get(id);
      if (job?.status === TrainingJobStatus.QUEUED) {
        await this.training.finish(id, TrainingJobStatus.FAILED, 'Interrupted by a restart while starting.');
      }
    }
  }
}
