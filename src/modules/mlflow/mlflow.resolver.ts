import { Ctx, FieldResolver, Resolver, Root } from 'type-graphql';
import type { Context } from '../../app/context.js';
import { TrainingJob } from '../training/training-job.model.js';
import { MlflowRun } from './mlflow-run.model.js';

@Resolver(() => TrainingJob)
export class TrainingJobMlflowResolver {
  @FieldResolver(() => MlflowRun, {
    nullable: true,
    description: "The job's run in MLflow when Pollen mirrors jobs there (MLFLOW_TRACKING_URI), with how far the mirror is; " +
      'null otherwise, and for a job whose run was never started.',
  })
  async mlflowRun(@Root() job: TrainingJob, @Ctx() ctx: Context): Promise<MlflowRun | null> {
    if (!ctx.services.mlflow.trackingUri) return null;
    const { run } = await ctx.loaders.grouped.load('TrainingJob.mlflowRun', job._id, async (jobIds) => {
      const runs = await ctx.services.mlflow.runsOf(jobIds);
      return new Map(jobIds.map((id) => [id.toHexString(), { run: runs.get(id.toHexString()) ?? null }]));
    });
    return run;
  }
}

@Resolver(() => MlflowRun)
export class MlflowRunResolver {
  @FieldResolver(() => String, { nullable: true, description: "The run in MLflow's web UI." })
  url(@Root() run: MlflowRun, @Ctx() ctx: Context): string | null {
    return ctx.services.mlflow.runUrl(run);
  }
}
