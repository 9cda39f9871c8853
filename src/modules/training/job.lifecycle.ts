import { claim, listClaims } from '../../db/claims.js';
import { readById } from '../../db/loaders.js';
import { conflict, notFound } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { PubSub, Subscription } from '../../pubsub/pubsub.js';
import { isFinished, TrainingJobModel, TrainingJobStatus, type Lease, type TrainingJob } from './training-job.model.js';
import { jobEvents, runnerWakeUps, type JobEvent } from './training.events.js';

const { QUEUED, STARTING, RUNNING, COMPLETED, FAILED, CANCELLED } = TrainingJobStatus;

/**
 * Where a job may go from each status; the one place that says so. A queued job is claimed by a
 * runner (STARTING), cancelled before it starts, or failed when its runner died while starting it.
 */
const TRANSITIONS: Record<TrainingJobStatus, readonly TrainingJobStatus[]> = {
  [QUEUED]: [STARTING, CANCELLED, FAILED],
  [STARTING]: [RUNNING, COMPLETED, FAILED, CANCELLED],
  [RUNNING]: [COMPLETED, FAILED, CANCELLED],
  [COMPLETED]: [],
  [FAILED]: [],
  [CANCELLED]: [],
};

/** Why a job ended as it did, in the words its statusReason uses. */
const REASONS = {
  cancelledBeforeStart: 'Cancelled before it started.',
  cancelled: (round: number) => `Cancelled at round ${round}.`,
  shutDown: (round: number) => `Interrupted at round ${round}: Pollen shut down.`,
  runnerDied: (round: number) => `Interrupted by a restart at round ${round}: the Pollen instance running it stopped.`,
  runnerDiedWhileStarting: 'Interrupted by a restart while starting.',
  couldNotStart: (why: string) => `Could not start: ${why}`,
};

/** The claim that gives a queued job to exactly one of a runner and a cancel request (see db/claims.ts). */
const START_CLAIM = 'training-job-start:';
const CANCEL_WAIT_MS = 30_000;
const QUEUE_READ = 20;

/** How a run ended by itself. */
export interface RunOutcome { status: TrainingJobStatus.COMPLETED | TrainingJobStatus.FAILED; reason: string | null }

/**
 * A training job's life: its states and the transitions between them, the claim that starts it,
 * the lease its runner holds, and the reasons it ends with. Runners report what happened (claimed,
 * run started, run ended, stopped); only this writes a job's status.
 */
export class JobLifecycle {
  constructor(
    private readonly pubsub: PubSub,
    /** Why a queued job cannot start yet (REMOTE jobs wait for their nodes), or null. */
    private readonly waitReason: (job: TrainingJob) => Promise<string | null>,
    /** What else changes when a job ends (the checkpoints it and its parent keep); never throws. */
    private readonly ended: (job: TrainingJob) => Promise<void>,
    /** Told of every status change, after its subscribers (see JobObserver); never throws. */
    private readonly changed: (job: TrainingJob) => void,
    private readonly logger: Logger,
  ) {}

  /** The oldest queued job that can start now, claimed for the caller; undefined when none. */
  async claimNext(): Promise<TrainingJob | undefined> {
    const queued = await TrainingJobModel.find({ status: QUEUED }).sort({ createdAt: 1, _id: 1 }).limit(QUEUE_READ)
      .lean<TrainingJob[]>().exec();
    for (const job of queued) {
      if (await this.waitReason(job)) continue;
      if (await claimStart(job)) return job;
    }
    return undefined;
  }

  /** A runner holds the job it claimed and is starting its run. */
  claimed(jobId: string, lease: Lease): Promise<TrainingJob> {
    return this.transition(jobId, STARTING, { startedAt: new Date(), lease });
  }

  /** Flower runs the job's ServerApp. */
  runStarted(jobId: string): Promise<TrainingJob> {
    return this.transition(jobId, RUNNING, {});
  }

  /** The run ended by itself: completed, or failed for `reason`. */
  runEnded(jobId: string, { status, reason }: RunOutcome): Promise<TrainingJob> {
    return this.end(jobId, status, reason);
  }

  launchFailed(jobId: string, error: Error): Promise<TrainingJob> {
    return this.end(jobId, FAILED, REASONS.couldNotStart(error.message));
  }

  /** The runner stopped the run: a user cancelled it, or Pollen is shutting down. */
  async stopped(jobId: string, why: 'cancel' | 'shutdown'): Promise<TrainingJob> {
    const round = (await this.get(jobId))?.currentRound ?? 0;
    return why === 'cancel' ? this.end(jobId, CANCELLED, REASONS.cancelled(round)) : this.end(jobId, FAILED, REASONS.shutDown(round));
  }

  /**
   * A user's cancel. A queued job is cancelled at once, unless a runner claimed it first; a running
   * one is asked to stop (its runner sees the request, here or through the database on another
   * instance), and this waits until it has been torn down.
   */
  async requestCancel(job: TrainingJob): Promise<TrainingJob> {
    if (isFinished(job.status)) throw conflict(`This job has already finished (${job.status}).`);
    const id = job._id.toHexString();
    if (job.status === QUEUED && await claimStart(job)) return this.end(id, CANCELLED, REASONS.cancelledBeforeStart);
    const events = this.pubsub.subscribe(jobEvents(id));
    await events.ready;
    const finished = this.waitUntilFinished(events, id);
    await TrainingJobModel.updateOne({ _id: job._id }, { $set: { cancelRequestedAt: new Date() } }).exec();
    this.pubsub.publish(runnerWakeUps, { cancelJobId: id });
    return finished;
  }

  /** Renews the leases of the jobs a runner holds; returns those whose cancel was requested meanwhile. */
  async renewLeases(jobIds: readonly string[], lease: Lease): Promise<string[]> {
    if (jobIds.length === 0) return [];
    await TrainingJobModel.updateMany({ _id: { $in: jobIds } }, { $set: { lease } }).exec();
    const jobs = await TrainingJobModel.find({ _id: { $in: jobIds } }, { cancelRequestedAt: 1 }).lean<TrainingJob[]>().exec();
    return jobs.filter((job) => job.cancelRequestedAt).map((job) => job._id.toHexString());
  }

  /**
   * Fails what runners that died left behind: jobs STARTING or RUNNING whose lease ran out (their
   * Flower processes died with them; metrics and logs are kept), and queued jobs claimed longer
   * than a lease ago but never started. `held` are the jobs the calling runner holds itself.
   */
  async reconcile(held: ReadonlySet<string>, leaseMs: number): Promise<void> {
    const now = new Date();
    const orphans = await TrainingJobModel.find({
      status: { $in: [STARTING, RUNNING] },
      $or: [{ lease: null }, { 'lease.expiresAt': { $lt: now } }],
    }).lean<TrainingJob[]>().exec();
    for (const job of orphans) {
      if (!held.has(job._id.toHexString())) await this.end(job._id.toHexString(), FAILED, REASONS.runnerDied(job.currentRound ?? 0));
    }
    const queued = await TrainingJobModel.find({ status: QUEUED }, { _id: 1 }).lean<TrainingJob[]>().exec();
    if (queued.length === 0) return;
    const stale = await listClaims(queued.map((job) => START_CLAIM + job._id.toHexString()), new Date(now.getTime() - leaseMs));
    for (const key of stale) {
      const id = key.slice(START_CLAIM.length);
      if ((await this.get(id))?.status === QUEUED) await this.end(id, FAILED, REASONS.runnerDiedWhileStarting);
    }
  }

  private get(jobId: string): Promise<TrainingJob | null> {
    return readById<TrainingJob>(TrainingJobModel, jobId);
  }

  private async end(jobId: string, status: TrainingJobStatus, reason: string | null): Promise<TrainingJob> {
    const job = await this.transition(jobId, status, { statusReason: reason, finishedAt: new Date(), lease: null });
    if (job.status === status) await this.ended(job);
    return job;
  }

  /**
   * Moves a job to `to` if its status allows it, and tells its subscribers. A transition the job's
   * status does not allow (a run reported started after it was cancelled) changes nothing.
   */
  private async transition(jobId: string, to: TrainingJobStatus, changes: Partial<TrainingJob>): Promise<TrainingJob> {
    const current = await TrainingJobModel.findById(jobId).lean<TrainingJob>().exec();
    if (!current) throw notFound('Training job');
    if (!TRANSITIONS[current.status].includes(to)) {
      this.logger.debug({ jobId, from: current.status, to }, 'transition not allowed; left as it is');
      return current;
    }
    const job = await TrainingJobModel.findOneAndUpdate({ _id: jobId, status: current.status }, { $set: { ...changes, status: to } },
      { returnDocument: 'after' }).lean<TrainingJob>().exec();
    if (!job) return (await TrainingJobModel.findById(jobId).lean<TrainingJob>().exec()) ?? current;
    this.pubsub.publish(jobEvents(jobId), { type: 'updated', job });
    this.changed(job);
    return job;
  }

  private async waitUntilFinished(events: Subscription<JobEvent>, jobId: string): Promise<TrainingJob> {
    const timer = setTimeout(() => void events.return?.(), CANCEL_WAIT_MS);
    try {
      for await (const event of events) {
        if (event.type === 'updated' && isFinished(event.job.status)) return event.job;
      }
      return (await this.get(jobId))!;
    } finally {
      clearTimeout(timer);
      await events.return?.();
    }
  }
}

function claimStart(job: TrainingJob): Promise<boolean> {
  return claim(START_CLAIM + job._id.toHexString(), job.projectId.toHexString());
}
