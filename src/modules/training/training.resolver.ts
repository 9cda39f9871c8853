import { GraphQLJSONObject } from 'graphql-scalars';
import {
  Arg, Args, Ctx, FieldResolver, ID, Int, Mutation, ObjectType, Query, Resolver, Root, Subscription,
} from 'type-graphql';
import type { Context } from '../../app/context.js';
import type { Page } from '../../db/paging.js';
import { connectionComplexity, ConnectionType } from '../../graphql/connection.js';
import { authorizeApp } from '../apps/app.policy.js';
import { FlowerApp } from '../apps/flower-app.model.js';
import { TrainingConfig } from '../configs/training-config.model.js';
import { Project } from '../projects/project.model.js';
import { authorizeInProject } from '../projects/project.policy.js';
import { User } from '../users/user.model.js';
import { LogLineObject } from '../../graphql/log-line.js';
import type { JobLogLine } from './job-log-line.model.js';
import { latestMetricsFromJson, MetricPhase, RoundMetric, type MetricRecord, type MetricValues } from './round-metric.model.js';
import { FederationKind, TrainingJob, TrainingJobStatus } from './training-job.model.js';
import { StartTrainingInput, TrainingJobsArgs } from './training.inputs.js';
import { authorizeJob } from './training.policy.js';
import { jobLogStream, jobUpdateStream, roundMetricStream } from './training.streams.js';

@ObjectType()
export class TrainingJobConnection extends ConnectionType('TrainingJob', TrainingJob) {}

const DEFAULT_LOG_LINES = 100;

@Resolver(() => TrainingJob)
export class TrainingJobResolver {
  @Query(() => TrainingJob, { nullable: true })
  async trainingJob(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<TrainingJob> {
    return (await authorizeJob(ctx, id, 'read')).record;
  }

  @Mutation(() => TrainingJob, { description: 'Checks the config against the app and queues a run; returns at once.' })
  async startTraining(@Arg('input', () => StartTrainingInput) input: StartTrainingInput, @Ctx() ctx: Context): Promise<TrainingJob> {
    const { record: app, access } = await authorizeApp(ctx, input.appId, 'startTraining');
    const { record: config } = await authorizeInProject(ctx, (key) => ctx.loaders.config.load(key), input.configId,
      'startTraining', 'Training configuration');
    return ctx.services.training.start(app, config, access.userId, input.federation ?? FederationKind.LOCAL);
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
