import type { Readable } from 'node:stream';
import { Types } from 'mongoose';
import { ALL_IN_ONE_REPLY, readById } from '../../db/loaders.js';
import { LogLineStore } from '../../db/log-lines.js';
import { findPages, type Page, type PageRequest } from '../../db/paging.js';
import { badUserInput, conflict, isDuplicateKeyError, notFound } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { PubSub } from '../../pubsub/pubsub.js';
import type { FlowerApp } from '../apps/flower-app.model.js';
import type { TrainingConfig } from '../configs/training-config.model.js';
import type { NodeService } from '../nodes/node.service.js';
import { CheckpointReason, type Checkpoint } from './checkpoint.model.js';
import { CheckpointService } from './checkpoint.service.js';
import type { MetricSeries } from './metric-series.model.js';
import { JobLifecycle } from './job.lifecycle.js';
import { JobLogLineModel, type JobLogLine } from './job-log-line.model.js';
import {
  latestMetricsFromJson, latestMetricsToJson, latestOfEachPhase, MetricPhase, RoundMetricModel, type MetricValues, type RoundMetric,
} from './round-metric.model.js';
import { runConfigFor } from './run-config.js';
import { bestRound, checkedStopRule, type StopRuleInput } from './stop-rule.js';
import {
  FederationKind, isFinished, TrainingJobModel, TrainingJobStatus, UNFINISHED_STATUSES, type TrainingJob,
} from './training-job.model.js';
import { jobEvents, runnerWakeUps, type JobObserver } from './training.events.js';

export const LOG_LINES_KEPT = 5_000;

export interface TrainingLimits { maxLocalSupernodes: number; maxConcurrentJobs: number }

/** How a job runs, besides its app and config. */
export interface RunOptions {
  federation: FederationKind;
  stopWhen?: StopRuleInput | null;
  keepCheckpoints?: number | null;
}

/** A checkpoint with why its job keeps it. */
export type KeptCheckpoint = Checkpoint & { reasons: CheckpointReason[] };


const DEFAULT_KEPT_CHECKPOINTS = 3;
const MAX_KEPT_CHECKPOINTS = 100;

export class TrainingService {
  /** A job's states and transitions: the only code that writes a job's status. */
  readonly lifecycle: JobLifecycle;
  private readonly checkpoints = new CheckpointService();
  private readonly observers: JobObserver[] = [];
  private readonly logLines = new LogLineStore<'jobId', JobLogLine>(JobLogLineModel, 'jobId', { kept: LOG_LINES_KEPT, trimEvery: 500 });

  constructor(
    private readonly pubsub: PubSub,
    private readonly nodes: NodeService,
    private readonly limits: TrainingLimits,
    logger: Logger,
  ) {
    const lifecycleLogger = logger.child({ component: 'job-lifecycle' });
    this.lifecycle = new JobLifecycle(pubsub, (job) => this.remoteWaitReason(job),
      (job) => this.settleCheckpoints(job).catch((error) => lifecycleLogger.warn({ err: error, jobId: job._id }, 'could not settle checkpoints')),
      (job) => this.observers.forEach((observer) => observer.statusChanged(job)),
      lifecycleLogger);
  }

  /** Adds a mirror of this instance's job events (see JobObserver). */
  observe(observer: JobObserver): void {
    this.observers.push(observer);
  }

  /** Checks the config against the app, then queues the job; a runner picks it up. */
  start(app: FlowerApp, config: TrainingConfig, creatorId: string, options: RunOptions): Promise<TrainingJob> {
    return this.queue(app, config, creatorId, options, {});
  }

  /**
   * Queues a job of the parent's app that starts from the parent's model after `fromRound` (a kept
   * checkpoint) and numbers its rounds on from there.
   */
  async fork(parent: TrainingJob, fromRound: number, app: FlowerApp | null, config: TrainingConfig, creatorId: string,
    options: RunOptions): Promise<TrainingJob> {
    if (!app || app.deletedAt) throw conflict("The parent's app was deleted: a fork runs the same app.");
    if (!parent.projectId.equals(config.projectId)) {
      throw badUserInput([{ field: 'configId', message: 'belongs to another project than the job' }]);
    }
    const checkpoint = Number.isInteger(fromRound) ? await this.checkpoints.get(parent._id, fromRound) : null;
    if (!checkpoint) {
      const kept = (await this.checkpoints.list(parent._id)).map((c) => c.round);
      throw badUserInput([{
        field: 'fromRound',
        message: `the job keeps no checkpoint of round ${fromRound} (kept: ${kept.length > 0 ? kept.join(', ') : 'none'})`,
      }]);
    }
    return this.queue(app, config, creatorId, options, {
      parentId: parent._id, parentRound: fromRound, initialCheckpointId: checkpoint._id, totalRounds: fromRound + config.rounds,
    });
  }

  private async queue(app: FlowerApp, config: TrainingConfig, creatorId: string, options: RunOptions,
    fork: Partial<Pick<TrainingJob, 'parentId' | 'parentRound' | 'initialCheckpointId' | 'totalRounds'>>): Promise<TrainingJob> {
    if (!app.projectId.equals(config.projectId)) {
      throw badUserInput([{ field: 'configId', message: 'belongs to another project than the app' }]);
    }
    const { federation } = options;
    if (federation === FederationKind.REMOTE) {
      const registered = await this.nodes.countRegistered(app.projectId);
      if (registered < config.clients) {
        throw badUserInput([{
          field: 'configId',
          message: `needs ${config.clients} SuperNodes, but the project has ${registered} node${registered === 1 ? '' : 's'}: ` +
            'register and deploy more, or use a config with fewer clients',
        }]);
      }
    } else if (federation === FederationKind.LOCAL && config.clients > this.limits.maxLocalSupernodes) {
      throw badUserInput([{
        field: 'configId',
        message: `needs ${config.clients} SuperNodes, more than the ${this.limits.maxLocalSupernodes} a LOCAL federation may ` +
          'start on this host (MAX_LOCAL_SUPERNODES); SIMULATION runs up to 1,000 virtual clients',
      }]);
    }
    const stopRule = checkedStopRule(options.stopWhen);
    const keepCheckpoints = options.keepCheckpoints ?? DEFAULT_KEPT_CHECKPOINTS;
    if (!Number.isInteger(keepCheckpoints) || keepCheckpoints < 1 || keepCheckpoints > MAX_KEPT_CHECKPOINTS) {
      throw badUserInput([{ field: 'keepCheckpoints', message: `must be a whole number from 1 to ${MAX_KEPT_CHECKPOINTS}` }]);
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
      runConfigJson: JSON.stringify(check.overrides), stopRule, keepCheckpoints, ...fork,
    })).toObject();
    this.publishUpdate(job);
    this.pubsub.publish(runnerWakeUps, {});
    return job;
  }

  /**
   * Stores the model a run saved after `round`, then deletes the checkpoints the job keeps no more
   * (see retainCheckpoints). Safe to repeat, like recordMetric.
   */
  async recordCheckpoint(job: TrainingJob, round: number, file: string): Promise<void> {
    await this.checkpoints.store(job, round, file);
    await this.retainCheckpoints(job);
  }

  /**
   * Keeps a job's latest `keepCheckpoints` checkpoints, the BEST under its stop rule, and those a
   * fork that has not finished starts from; deletes the rest, and keeps the job's size up to date.
   * The best can only be a latest one or one kept already: a round that was neither never becomes it.
   */
  async retainCheckpoints(job: TrainingJob): Promise<void> {
    const kept = await this.checkpoints.list(job._id);
    const latest = new Set(kept.slice(-job.keepCheckpoints).map((c) => c.round));
    const best = job.stopRule ? bestRound(job.stopRule, await this.ruleValues(job, kept.map((c) => c.round))) : undefined;
    const forks = await TrainingJobModel.find({ parentId: job._id, status: { $in: UNFINISHED_STATUSES } }, { initialCheckpointId: 1 })
      .lean<TrainingJob[]>().exec();
    const pinned = new Set(forks.map((fork) => fork.initialCheckpointId?.toHexString()));
    const gone = kept.filter((c) => !latest.has(c.round) && c.round !== best && !pinned.has(c._id.toHexString()));
    await this.checkpoints.delete(gone);
    const checkpointsSizeBytes = kept.filter((c) => !gone.includes(c)).reduce((sum, c) => sum + c.sizeBytes, 0);
    const changed = await TrainingJobModel.findOneAndUpdate({ _id: job._id, checkpointsSizeBytes: { $ne: checkpointsSizeBytes } },
      { $set: { checkpointsSizeBytes } }, { returnDocument: 'after' }).lean<TrainingJob>().exec();
    if (changed) this.publishUpdate(changed);
  }

  /**
   * When a job ends: its checkpoints are judged once more with all its metrics in, and its parent's
   * checkpoint that it started from is no longer pinned by it.
   */
  private async settleCheckpoints(job: TrainingJob): Promise<void> {
    await this.retainCheckpoints(job);
    const parent = job.parentId ? await TrainingJobModel.findById(job.parentId).lean<TrainingJob>().exec() : null;
    if (parent) await this.retainCheckpoints(parent);
  }

  /** Each job's kept checkpoints (ascending rounds), with why it keeps each, by job id. */
  async checkpointsOf(jobs: readonly TrainingJob[]): Promise<Map<string, KeptCheckpoint[]>> {
    const byJob = await this.checkpoints.listForJobs(jobs.map((job) => job._id));
    const bestByJob = await this.bestRounds(jobs.filter((job) => job.stopRule));
    return new Map(jobs.map((job) => {
      const id = job._id.toHexString();
      const kept = byJob.get(id) ?? [];
      const latest = new Set(kept.slice(-job.keepCheckpoints).map((c) => c.round));
      const final = isFinished(job.status) ? kept.at(-1)?.round : undefined;
      return [id, kept.map((checkpoint) => ({
        ...checkpoint,
        reasons: [
          ...latest.has(checkpoint.round) ? [CheckpointReason.LATEST] : [],
          ...bestByJob.get(id) === checkpoint.round ? [CheckpointReason.BEST] : [],
          ...final === checkpoint.round ? [CheckpointReason.FINAL] : [],
        ],
      }))];
    }));
  }

  /** The checkpoint a fork starts from, written to `file`; false when it is gone. */
  async writeInitialModel(job: TrainingJob, file: string): Promise<boolean> {
    const checkpoint = job.initialCheckpointId ? await this.checkpoints.getById(job.initialCheckpointId) : null;
    if (!checkpoint) return false;
    await this.checkpoints.writeTo(checkpoint, file);
    return true;
  }

  /** A kept checkpoint of a job. */
  checkpoint(jobId: Types.ObjectId, round: number): Promise<Checkpoint | null> {
    return this.checkpoints.get(jobId, round);
  }

  /** The stored .npz of a checkpoint, or a range of its bytes (`end` exclusive). */
  openCheckpoint(checkpoint: Checkpoint, range?: { start: number; end: number }): Readable {
    return this.checkpoints.open(checkpoint, range);
  }

  /** Each job's numeric metrics as series (phase, name) of points by round, by job id. */
  async metricSeries(jobIds: readonly Types.ObjectId[], phase?: MetricPhase | null, names?: readonly string[] | null): Promise<Map<string, MetricSeries[]>> {
    const filter: Record<string, unknown> = { jobId: { $in: jobIds } };
    if (phase) filter.phase = phase;
    const metrics = await RoundMetricModel.find(filter).sort({ round: 1 }).batchSize(ALL_IN_ONE_REPLY).lean<RoundMetric[]>().exec();
    const wanted = names ? new Set(names) : undefined;
    const series = new Map<string, Map<string, MetricSeries>>(jobIds.map((id) => [id.toHexString(), new Map()]));
    for (const metric of metrics) {
      const byKey = series.get(metric.jobId.toHexString())!;
      for (const [name, value] of Object.entries(JSON.parse(metric.valuesJson) as MetricValues)) {
        if (typeof value !== 'number' || (wanted && !wanted.has(name))) continue;
        const key = `${metric.phase} ${name}`;
        let one = byKey.get(key);
        if (!one) byKey.set(key, (one = { phase: metric.phase, name, points: [] }));
        one.points.push({ round: metric.round, value });
      }
    }
    const phaseOrder = Object.values(MetricPhase);
    const inOrder = (a: MetricSeries, b: MetricSeries) => phaseOrder.indexOf(a.phase) - phaseOrder.indexOf(b.phase) || (a.name < b.name ? -1 : 1);
    return new Map([...series].map(([id, byKey]) => [id, [...byKey.values()].sort(inOrder)]));
  }

  /** Each job's forks, oldest first, by parent id. */
  async forksOf(jobIds: readonly Types.ObjectId[]): Promise<Map<string, TrainingJob[]>> {
    const forks = await TrainingJobModel.find({ parentId: { $in: jobIds } }).sort({ createdAt: 1, _id: 1 }).batchSize(ALL_IN_ONE_REPLY)
      .lean<TrainingJob[]>().exec();
    const byParent = new Map<string, TrainingJob[]>(jobIds.map((id) => [id.toHexString(), []]));
    for (const fork of forks) byParent.get(fork.parentId!.toHexString())?.push(fork);
    return byParent;
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
    if (metric) {
      this.pubsub.publish(jobEvents(job._id.toHexString()), { type: 'metric', metric });
      for (const observer of this.observers) observer.metricStored(job, metric);
    }
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
    await this.checkpoints.deleteAllForJobs(jobIds);
    await RoundMetricModel.deleteMany({ jobId: { $in: jobIds } }).exec();
    await this.logLines.deleteAll(jobIds);
    await TrainingJobModel.deleteMany({ projectId }).exec();
  }

  /** The value of each job's stop-rule metric, by round, restricted to `rounds` when given. */
  private async ruleValues(job: TrainingJob, rounds?: readonly number[]): Promise<Map<number, number>> {
    return (await this.ruleValuesOf([job], rounds)).get(job._id.toHexString()) ?? new Map();
  }

  /** The best round of each job under its stop rule, by job id. */
  private async bestRounds(jobs: readonly TrainingJob[]): Promise<Map<string, number | undefined>> {
    const values = await this.ruleValuesOf(jobs);
    return new Map(jobs.map((job) => [job._id.toHexString(), bestRound(job.stopRule!, values.get(job._id.toHexString()) ?? new Map())]));
  }

  private async ruleValuesOf(jobs: readonly TrainingJob[], rounds?: readonly number[]): Promise<Map<string, Map<number, number>>> {
    const withRules = jobs.filter((job) => job.stopRule);
    if (withRules.length === 0) return new Map();
    const filter: Record<string, unknown> = { jobId: { $in: withRules.map((job) => job._id) } };
    if (rounds) filter.round = { $in: rounds };
    const metrics = await RoundMetricModel.find(filter).batchSize(ALL_IN_ONE_REPLY).lean<RoundMetric[]>().exec();
    const rules = new Map(withRules.map((job) => [job._id.toHexString(), job.stopRule!]));
    const values = new Map<string, Map<number, number>>();
    for (const metric of metrics) {
      const rule = rules.get(metric.jobId.toHexString())!;
      if (metric.phase !== rule.phase) continue;
      const value = (JSON.parse(metric.valuesJson) as MetricValues)[rule.metric];
      if (typeof value !== 'number') continue;
      let byRound = values.get(metric.jobId.toHexString());
      if (!byRound) values.set(metric.jobId.toHexString(), (byRound = new Map()));
      byRound.set(metric.round, value);
    }
    return values;
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
