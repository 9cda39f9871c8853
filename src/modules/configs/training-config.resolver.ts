import { GraphQLJSONObject } from 'graphql-scalars';
import { Arg, Args, Ctx, FieldResolver, ID, Mutation, ObjectType, Query, Resolver, Root } from 'type-graphql';
import type { Context } from '../../app/context.js';
import { connectionComplexity, ConnectionType, PageArgs } from '../../graphql/connection.js';
import { Project } from '../projects/project.model.js';
import { authorizeInProject, authorizeProject } from '../projects/project.policy.js';
import { User } from '../users/user.model.js';
import { CreateTrainingConfigInput } from './training-config.inputs.js';
import { runConfigOf, TrainingConfig } from './training-config.model.js';

@ObjectType()
export class TrainingConfigConnection extends ConnectionType('TrainingConfig', TrainingConfig) {}

@Resolver(() => TrainingConfig)
export class TrainingConfigResolver {
  @Query(() => TrainingConfig, { nullable: true })
  async trainingConfig(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<TrainingConfig> {
    return (await authorizeInProject(ctx, (key) => ctx.loaders.config.load(key), id, 'read', 'Training configuration')).record;
  }

  @Mutation(() => TrainingConfig, { description: 'Saves a new config, or the next version of one with the same name.' })
  async createTrainingConfig(
    @Arg('input', () => CreateTrainingConfigInput) input: CreateTrainingConfigInput,
    @Ctx() ctx: Context,
  ): Promise<TrainingConfig> {
    const { project, userId } = await authorizeProject(ctx, input.projectId, 'createConfig');
    return ctx.services.configs.create(project._id, userId, input);
  }

  @FieldResolver(() => Project)
  async project(@Root() config: TrainingConfig, @Ctx() ctx: Context): Promise<Project> {
    return (await ctx.loaders.project.load(config.projectId.toHexString()))!;
  }

  @FieldResolver(() => User)
  async createdBy(@Root() config: TrainingConfig, @Ctx() ctx: Context): Promise<User> {
    return (await ctx.loaders.user.load(config.createdById.toHexString()))!;
  }

  @FieldResolver(() => GraphQLJSONObject)
  runConfig(@Root() config: TrainingConfig): Record<string, unknown> {
    return runConfigOf(config);
  }
}

@Resolver(() => Project)
export class ProjectConfigsResolver {
  @FieldResolver(() => TrainingConfigConnection, { complexity: connectionComplexity })
  configs(@Root() project: Project, @Args(() => PageArgs) args: PageArgs, @Ctx() ctx: Context) {
    return ctx.loaders.grouped.load(`Project.configs ${JSON.stringify(args)}`, project._id,
      (projectIds) => ctx.services.configs.pagesByProject(projectIds, args));
  }
}
