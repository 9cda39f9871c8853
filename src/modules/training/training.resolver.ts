import { GraphQLJSONObject } from 'graphql-scalars';
import {
  Arg, Args, Ctx, FieldResolver, ID, Int, Mutation, ObjectType, Query, Resolver, Root, Subscription,
} from 'type-graphql';
import type { Context } from '../../app/context.js';
import { GraphQLError } from 'graphql';
import { badUserInput, ErrorCode } from '../../errors.js';
import type { Page } from '../../db/paging.js';
import { connectionComplexity, ConnectionType } from '../../graphql/connection.js';
import { authorizeApp } from '../apps/app.policy.js';
import { FlowerApp } from '../apps/flower-app.model.js';
import { TrainingConfig } from '../configs/training-config.model.js';
import { Project } from '../projects/project.model.js';
import { authorizeInProject, requireViewer } from '../projects/project.policy.js';
import { User } from '../users/user.model.js';
import { LogLineObject } from '../../graphql/log-line.js';
import type { JobLogLine } from './job-log-line.model.js';
import { latestMetricsFromJson, MetricPhase, RoundMetric, type MetricRecord, type MetricValues } from './round-metric.model.js';
import { Checkpoint, CheckpointReason } from './checkpoint.model.js';
import { MetricSeries } from './metric-series.model.js';
import { FederationKind, TrainingJob, TrainingJobStatus } from './training-job.model.js';
import { ForkTrainingInput, StartTrainingInput, TrainingJobsArgs } from './training.inputs.js';
import type { KeptCheckpoint } from './training.service.js';
import { authorizeJob } from './training.policy.js';
import { jobLogStream, jobUpdateStream, roundMetricStream } from './training.streams.js';

@ObjectType()
export class TrainingJobConnection extends ConnectionType('TrainingJob', TrainingJob) {}

const DEFAULT_LOG_LINES = 100;

const MAX_JOBS_ASKED = 100;

/** What an outsider (or a malformed id) gets for a job: it is shown as null among the others. */
function isHiddenFromCaller(error: unknown): boolean {
  const code = error instanceof GraphQLError ? error.extensions.code : undefined;
  return code === ErrorCode.NOT_FOUND || code === ErrorCode.FORBIDDEN || code === ErrorCode.BAD_USER_INPUT;
}


@Resolver(() => TrainingJob)
export class TrainingJobResolver {
  @Query(() => TrainingJob, { nullable: true })
  async trainingJob(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<TrainingJob> {
    return (await authorizeJob(ctx, id, 'read')).record;
  }

  @Query(() => [TrainingJob], { nullable: 'items', description: 'Jobs by id, in the order asked; a job the caller may not see is null.' })
  async trainingJobs(@Arg('ids', () => [ID]) ids: string[], @Ctx() ctx: Context): Promise<Array<TrainingJob | null>> {
    requireViewer(ctx);
    if (ids.length > MAX_JOBS_ASKED) throw badUserInput([{ field: 'ids', message: `may name at most ${MAX_JOBS_ASKED} jobs` }]);
    return Promise.all(ids.map((id) => authorizeJob(ctx, id, 'read').then(({ record }) => record, (error: unknown) => {
      if (isHiddenFromCaller(error)) return null;
      throw error;
    })));
  }

  @Mutation(() => TrainingJob, { description: 'Checks the config against the app and queues a run; returns at once.' })
  async startTraining(@Arg('input', () => StartTrainingInput) input: StartTrainingInput, @Ctx() ctx: Context): Promise<TrainingJob> {
    const { record: app, access } = await authorizeApp(ctx, input.appId, 'startTraining');
    const { record: config } = await authorizeInProject(ctx, (key) => ctx.loaders.config.load(key), input.configId,
      'startTraining', 'Training configuration');
    return ctx.services.training.start(app, config, access.userId, {
      federation: input.federation ?? FederationKind.LOCAL, stopWhen: input.stopWhen, keepCheckpoints: input.keepCheckpoints,
    });
  }

  @Mutation(() => TrainingJob, { description: "EDITOR or OWNER of the parent's project. The checkpoint must still be kept." })
  async forkTraining(@Arg('input', () => ForkTrainingInput) input: ForkTrainingInput, @Ctx() ctx: Context): Promise<TrainingJob> {
    const { record: parent, access } = await authorizeJob(ctx, input.jobId, 'startTraining');
    const { record: config } = await authorizeInProject(ctx, (key) => ctx.loaders.config.load(key),
      input.configId ?? parent.configId.toHexString(), 'startTraining', 'Training configuration');
    const app = await ctx.loaders.app.load(parent.appId.toHexString());
    return ctx.services.training.fork(parent, input.fromRound, app, config, access.userId, {
      federation: input.federation ?? parent.federation, stopWhen: input.stopWhen, keepCheckpoints: input.keepCheckpoints,
    });
  }

  @Mutation(() => TrainingJob, { description: 'Cancels a queued job, or stops a running one and tears it down.' })
  async cancelTraining(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<TrainingJob> {
    const { record } = await authorizeJob(ctx, id, 'cancelTraining');
    return ctx.services.training.lifecycle.requestCancel(record);
  }

  @Subscription(() => TrainingJob, {
    description: "Emits the job's current state at once, then every change; completes when the job ends.",
    subscribe: async ({ args, context }) => {
      const { record } = await authorizeJob(context as Context, args.jobId as string, 'read');
      return jobUpdateStream((context as Context).services, record);
    },
  })
  trainingJobUpdated(@Root() job: TrainingJob, @Arg('jobId', () => ID) _jobId: string): TrainingJob {
    return job;
  }

  @Subscription(() => RoundMetric, {
    description: 'Replays stored metrics with round >= fromRound (default: none, live only), then streams new ones ' +
      'with no gap and no duplicate; completes when the job ends.',
    subscribe: async ({ args, context }) => {
      const { record } = await authorizeJob(context as Context, args.jobId as string, 'read');
      return roundMetricStream((context as Context).services, record, args.fromRound as number | null | undefined);
    },
  })
  roundMetrics(
    @Root() metric: RoundMetric,
    @Arg('jobId', () => ID) _jobId: string,
    @Arg('fromRound', () => Int, { nullable: true }) _fromRound?: number,
  ): RoundMetric {
    return metric;
  }

  @Subscription(() => LogLineObject, {
    description: 'ServerApp output, line by line; completes when the job ends.',
    subscribe: async ({ args, context }) => {
      const { record } = await authorizeJob(context as Context, args.jobId as string, 'read');
      return jobLogStream((context as Context).services, record);
    },
  })
  trainingJobLogs(@Root() line: JobLogLine, @Arg('jobId', () => ID) _jobId: string): JobLogLine {
    return line;
  }

  @FieldResolver(() => Project)
  async project(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<Project> {
    return (await ctx.loaders.project.load(job.projectId.toHexString()))!;
  }

  @FieldResolver(() => FlowerApp, { description: 'The app that ran, even if it has since been deleted.' })
  async app(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<FlowerApp> {
    return (await ctx.loaders.app.load(job.appId.toHexString()))!;
  }

  @FieldResolver(() => TrainingConfig)
  async config(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<TrainingConfig> {
    return (await ctx.loaders.config.load(job.configId.toHexString()))!;
  }

  @FieldResolver(() => User)
  async createdBy(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<User> {
    return (await ctx.loaders.user.load(job.createdById.toHexString()))!;
  }

  @FieldResolver(() => String, { nullable: true, description: 'Why the job is queued, failed or was cancelled.' })
  statusReason(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<string | null> | string | null {
    if (job.status !== TrainingJobStatus.QUEUED) return job.statusReason;
    return ctx.loaders.grouped.load('TrainingJob.statusReason', job._id, (jobIds) => ctx.services.training.queuedReasons(jobIds));
  }

  @FieldResolver(() => [RoundMetric])
  metrics(
    @Root() job: TrainingJob,
    @Ctx() ctx: Context,
    @Arg('fromRound', () => Int, { nullable: true }) fromRound?: number,
    @Arg('phase', () => MetricPhase, { nullable: true }) phase?: MetricPhase,
  ): Promise<RoundMetric[]> {
    return ctx.services.training.metrics(job._id, fromRound, phase);
  }

  @FieldResolver(() => [Checkpoint], { description: 'The checkpoints the job keeps, by ascending round.' })
  checkpoints(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<KeptCheckpoint[]> {
    return keptCheckpoints(job, ctx);
  }

  @FieldResolver(() => Checkpoint, { nullable: true, description: 'The model after the last finished round.' })
  async finalCheckpoint(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<KeptCheckpoint | undefined> {
    return (await keptCheckpoints(job, ctx)).find((c) => c.reasons.includes(CheckpointReason.FINAL));
  }

  @FieldResolver(() => Checkpoint, { nullable: true, description: "Under stopRule's metric and goal; null without a rule." })
  async bestCheckpoint(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<KeptCheckpoint | undefined> {
    return (await keptCheckpoints(job, ctx)).find((c) => c.reasons.includes(CheckpointReason.BEST));
  }

  @FieldResolver(() => TrainingJob, { nullable: true, description: 'The job this one was forked from.' })
  async parent(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<TrainingJob | null> {
    return job.parentId ? ctx.loaders.job.load(job.parentId.toHexString()) : null;
  }

  @FieldResolver(() => [TrainingJob], { description: 'The jobs forked from this one, oldest first.' })
  forks(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<TrainingJob[]> {
    return ctx.loaders.grouped.load('TrainingJob.forks', job._id, (jobIds) => ctx.services.training.forksOf(jobIds));
  }

  @FieldResolver(() => [MetricSeries], { description: 'Each numeric metric as points by round, for charts and comparisons.' })
  metricSeries(
    @Root() job: TrainingJob,
    @Ctx() ctx: Context,
    @Arg('phase', () => MetricPhase, { nullable: true }) phase?: MetricPhase | null,
    @Arg('names', () => [String], { nullable: true }) names?: string[] | null,
  ): Promise<MetricSeries[]> {
    return ctx.loaders.grouped.load(`TrainingJob.metricSeries ${JSON.stringify([phase ?? null, names ?? null])}`, job._id,
      (jobIds) => ctx.services.training.metricSeries(jobIds, phase, names));
  }

  @FieldResolver(() => [RoundMetric], { description: "Each phase's most recent round." })
  latestMetrics(@Root() job: TrainingJob): MetricRecord[] {
    return latestMetricsFromJson(job.latestMetricsJson);
  }

  @FieldResolver(() => [LogLineObject], { description: `The last lines of ServerApp output (${DEFAULT_LOG_LINES} by default).` })
  logs(@Root() job: TrainingJob, @Ctx() ctx: Context, @Arg('last', () => Int, { nullable: true }) last?: number): Promise<JobLogLine[]> {
    return ctx.services.training.logs(job._id, Math.min(Math.max(last ?? DEFAULT_LOG_LINES, 1), 5_000));
  }
}

@Resolver(() => RoundMetric)
export class RoundMetricResolver {
  @FieldResolver(() => GraphQLJSONObject)
  values(@Root() metric: RoundMetric): MetricValues {
    return JSON.parse(metric.valuesJson) as MetricValues;
  }
}

@Resolver(() => Project)
export class ProjectTrainingJobsResolver {
  @FieldResolver(() => TrainingJobConnection, { complexity: connectionComplexity })
  trainingJobs(@Root() project: Project, @Args(() => TrainingJobsArgs) args: TrainingJobsArgs, @Ctx() ctx: Context): Promise<Page<TrainingJob>> {
    return ctx.loaders.grouped.load(`Project.trainingJobs ${JSON.stringify(args)}`, project._id,
      (projectIds) => ctx.services.training.pagesByProject(projectIds, args));
  }
}

/** The job's kept checkpoints with their reasons, loaded for every job of the operation at once. */
async function keptCheckpoints(job: TrainingJob, ctx: Context): Promise<KeptCheckpoint[]> {
  return ctx.loaders.grouped.load('TrainingJob.checkpoints', job._id, async (jobIds) => {
    const jobs = await Promise.all(jobIds.map((id) => ctx.loaders.job.load(id.toHexString())));
    return ctx.services.training.checkpointsOf(jobs.filter((one): one is TrainingJob => one !== null));
  });
}
