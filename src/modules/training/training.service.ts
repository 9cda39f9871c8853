import { Types } from 'mongoose';
import { readById } from '../../db/loaders.js';
import { LogLineStore } from '../../db/log-lines.js';
import { findPages, type Page, type PageRequest } from '../../db/paging.js';
import { badUserInput, isDuplicateKeyError, notFound } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { PubSub } from '../../pubsub/pubsub.js';
import type { FlowerApp } from '../apps/flower-app.model.js';
import type { TrainingConfig } from '../configs/training-config.model.js';
import type { NodeService } from '../nodes/node.service.js';
import { JobLifecycle } from './job.lifecycle.js';
import { JobLogLineModel, type JobLogLine } from './job-log-line.model.js';
import {
  latestMetricsFromJson, latestMetricsToJson, latestOfEachPhase, RoundMetricModel, type MetricPhase, type MetricValues, type RoundMetric,
} from './round-metric.model.js';
import { runConfigFor } from './run-config.js';
import { FederationKind, TrainingJobModel, TrainingJobStatus, UNFINISHED_STATUSES, type TrainingJob } from './training-job.model.js';
import { jobEvents, runnerWakeUps } from './training.events.js';

export const LOG_LINES_KEPT = 5_000;

export interface TrainingLimits { maxLocalSupernodes: number; maxConcurrentJobs: number }

export class TrainingService {
  /** A job's states and transitions: the only code that writes a job's status. */
  readonly lifecycle: JobLifecycle;
  private readonly logLines = new LogLineStore<'jobId', JobLogLine>(JobLogLineModel, 'jobId', { kept: LOG_LINES_KEPT, trimEvery: 500 });

  constructor(
    private readonly pubsub: PubSub,
    private readonly nodes: NodeService,
    private readonly limits: TrainingLimits,
    logger: Logger,
  ) {
    this.lifecycle = new JobLifecycle(pubsub, (job) => this.remoteWaitReason(job), logger.child({ component: 'job-lifecycle' }));
  }

  /** Checks the config against the app, then queues the job; a runner picks it up. */
  async start(app: FlowerApp, config: TrainingConfig, creatorId: string, federation: FederationKind): Promise<TrainingJob> {
    if (!app.projectId.equals(config.projectId)) {
      throw badUserInput([{ field: 'configId', message: 'belongs to another project than the app' }]);
    }
    if (federation === FederationKind.REMOTE) {
      const registered = await this.nodes.countRegistered(app.projectId);
      if (registered < config.clients) {
        throw badUserInput([{
          field: 'configId',
          message: `needs ${config.clients} SuperNodes, but the project has ${registered} node${registered === 1 ? '' : 's'}: ` +
            'register and deploy more, or use a config with fewer clients',
        }]);
      }
    } else if (config.clients > this.limits.maxLocalSupernodes) {
      throw badUserInput([{
        field: 'configId',
        message: `needs ${config.clients} SuperNodes, more than the ${this.limits.maxLocalSupernodes} a LOCAL federation may ` +
          'start on this host (MAX_LOCAL_SUPERNODES)',
      }]);
    }
    const check = runConfigFor(JSON.parse(app.runConfigDefaultsJson), config);
    if (!check.ok) {
      const declared = check.declared.length > 0 ? check.declared.join(', ') : 'none';
      throw badUserInput([{ field: 'configId', message: `${check.problems.join('; ')}. The app declares: ${declared}` }],
        { problems: check.problems, declaredKeys: check.declared });
    }
    const job = (await TrainingJobModel.create({
      projectId: app.projectId, appId: app._id, configId: config._id, createdById: new Types.ObjectId(creatorId),
      status: TrainingJobStatus.QUEUED, federation, clients: config.clients, totalRounds: config.rounds,
      runConfigJson: JSON.stringify(check.overrides),
    })).toObject();
    this.publishUpdate(job);
    this.pubsub.publish(runnerWakeUps, {});
    return job;
  }

  /** Flower's id for the job's run, once Flower accepted it. */
  recordFlowerRun(jobId: string, flowerRunId: string): Promise<TrainingJob> {
    return this.update(jobId, { flowerRunId });
  }

  /**
   * Stores one round's metrics once, then publishes them, and keeps the job's currentRound and
   * latestMetrics up to date. Safe to repeat: a repeated event (or a retry after an outage) stores
   * and publishes no metric again, and leaves the job as it was.
   */
  async recordMetric(job: TrainingJob, round: number, phase: MetricPhase, values: MetricValues, recordedAt: Date): Promise<void> {
    const record = { round, phase, valuesJson: JSON.stringify(values), recordedAt };
    let metric: RoundMetric | undefined;
    try {
      metric = (await RoundMetricModel.create({ jobId: job._id, ...record })).toObject();
    } catch (error) {
      if (!isDuplicateKeyError(error)) throw error;
    }
    if (metric) this.pubsub.publish(jobEvents(job._id.toHexString()), { type: 'metric', metric });
    // One runner records a job's metrics, one at a time: this read-then-write does not race.
    const current = await TrainingJobModel.findById(job._id, { currentRound: 1, latestMetricsJson: 1 }).lean<TrainingJob>().exec();
    if (!current) return;
    const kept = latestMetricsFromJson(current.latestMetricsJson ?? '[]');
    const latestMetrics = latestOfEachPhase([...kept, record]);
    const changes: Partial<TrainingJob> = {};
    if (round > (current.currentRound ?? -1)) changes.currentRound = round;
    if (latestMetrics.includes(record) && !kept.some((metric) => metric.phase === phase && metric.round === round)) {
      changes.latestMetricsJson = latestMetricsToJson(latestMetrics);
    }
    if (Object.keys(changes).length > 0) await this.update(job._id.toHexString(), changes);
  }

  /** Appends ServerApp output; only the last LOG_LINES_KEPT lines per job are kept. */
  async appendLogs(jobId: string, lines: Array<{ at: Date; line: string }>): Promise<void> {
    for (const line of await this.logLines.append(new Types.ObjectId(jobId), lines)) {
      this.pubsub.publish(jobEvents(jobId), { type: 'log', line });
    }
  }

  /** The job writes no more log lines (it ended). */
  forgetLogSequence(jobId: string): void {
    this.logLines.forget(jobId);
  }

  get(jobId: string): Promise<TrainingJob | null> {
    return readById<TrainingJob>(TrainingJobModel, jobId);
  }

  /** A page of jobs for each project, by project id. */
  pagesByProject(projectIds: readonly Types.ObjectId[], args: PageRequest & { status?: TrainingJobStatus | null }): Promise<Map<string, Page<TrainingJob>>> {
    return findPages(TrainingJobModel, 'projectId', projectIds, args.status ? { status: args.status } : {}, args);
  }

  /** Metrics in the order Flower aggregated them (rounds ascending). */
  async metrics(jobId: Types.ObjectId, fromRound?: number | null, phase?: MetricPhase | null): Promise<RoundMetric[]> {
    const filter: Record<string, unknown> = { jobId };
    if (fromRound !== undefined && fromRound !== null) filter.round = { $gte: fromRound };
    if (phase) filter.phase = phase;
    return RoundMetricModel.find(filter).sort({ round: 1, recordedAt: 1 }).lean<RoundMetric[]>().exec();
  }

  /**
   * Gives jobs stored before the latest metrics were kept on the job their latest metrics. Runs at
   * start; quick once done, and harmless when several instances run it at once.
   */
  async backfillLatestMetrics(): Promise<void> {
    const missing = { latestMetricsJson: { $exists: false } };
    const jobs = await TrainingJobModel.find(missing, { _id: 1 }).lean<TrainingJob[]>().exec();
    for (const { _id } of jobs) {
      const latestMetricsJson = latestMetricsToJson(latestOfEachPhase(await this.metrics(_id)));
      await TrainingJobModel.updateOne({ _id, ...missing }, { $set: { latestMetricsJson } }).exec();
    }
  }

  logs(jobId: Types.ObjectId, last: number): Promise<JobLogLine[]> {
    return this.logLines.last(jobId, last);
  }

  /**
   * Why each of these queued jobs waits, and its place in line, as of now, by id. The queue is
   * read once for all of them (a page may show many queued jobs).
   */
  async queuedReasons(jobIds: readonly Types.ObjectId[]): Promise<Map<string, string>> {
    const [queue, running] = await Promise.all([
      TrainingJobModel.find({ status: TrainingJobStatus.QUEUED }, { createdAt: 1, projectId: 1, federation: 1, clients: 1 })
        .sort({ createdAt: 1, _id: 1 }).lean<TrainingJob[]>().exec(),
      TrainingJobModel.countDocuments({ status: { $in: [TrainingJobStatus.STARTING, TrainingJobStatus.RUNNING] } }).exec(),
    ]);
    const capacity = `${running} of ${this.limits.maxConcurrentJobs} runner slot${this.limits.maxConcurrentJobs === 1 ? '' : 's'} busy`;
    const reasons = new Map<string, string>();
    for (const id of jobIds) {
      const position = queue.findIndex((queued) => queued._id.equals(id));
      const reason = position < 0
        ? 'Leaving the queue: a runner is starting it, or it was cancelled.'
        : await this.remoteWaitReason(queue[position]!) ?? `Waiting for a free runner (${capacity}); position ${position + 1} in line.`;
      reasons.set(id.toHexString(), reason);
    }
    return reasons;
  }

  async hasUnfinishedJobs(filter: { projectId?: Types.ObjectId; appId?: Types.ObjectId; federation?: FederationKind }): Promise<boolean> {
    return Boolean(await TrainingJobModel.exists({ ...filter, status: { $in: UNFINISHED_STATUSES } }));
  }

  /** Removes a project's (finished) jobs with their metrics and logs. */
  async deleteAllInProject(projectId: Types.ObjectId): Promise<void> {
    const jobs = await TrainingJobModel.find({ projectId }, { _id: 1 }).lean<TrainingJob[]>().exec();
    const jobIds = jobs.map((job) => job._id);
    await RoundMetricModel.deleteMany({ jobId: { $in: jobIds } }).exec();
    await this.logLines.deleteAll(jobIds);
    await TrainingJobModel.deleteMany({ projectId }).exec();
  }

  /** Writes a change of a job that is not its status (only the lifecycle writes that) and tells its subscribers. */
  private async update(jobId: string, changes: Partial<Omit<TrainingJob, 'status'>>): Promise<TrainingJob> {
    const job = await TrainingJobModel.findOneAndUpdate({ _id: jobId }, { $set: changes }, { returnDocument: 'after' })
      .lean<TrainingJob>().exec();
    if (!job) throw notFound('Training job');
    this.publishUpdate(job);
    return job;
  }

  private publishUpdate(job: TrainingJob): void {
    this.pubsub.publish(jobEvents(job._id.toHexString()), { type: 'updated', job });
  }

  /**
   * Why a REMOTE job cannot start yet, or null when it can: it needs `clients` ONLINE nodes, and
   * the project's SuperLink runs one job at a time (they would compete for the same nodes).
   */
  private async remoteWaitReason(job: TrainingJob): Promise<string | null> {
    if (job.federation !== FederationKind.REMOTE) return null;
    const online = await this.nodes.countOnline(job.projectId);
    if (online < job.clients) return `Waiting for ${job.clients} nodes, ${online} online.`;
    const busy = await TrainingJobModel.exists({
      projectId: job.projectId, federation: FederationKind.REMOTE, _id: { $ne: job._id },
      status: { $in: [TrainingJobStatus.STARTING, TrainingJobStatus.RUNNING] },
    });
    return busy ? "Waiting for the project's running REMOTE job to finish: its nodes train one job at a time." : null;
  }
}
