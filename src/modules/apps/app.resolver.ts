import type { FileUpload } from 'graphql-upload-ts';
import { GraphQLJSONObject } from 'graphql-scalars';
import { Arg, Args, Ctx, FieldResolver, ID, Mutation, ObjectType, Query, Resolver, Root } from 'type-graphql';
import type { Context } from '../../app/context.js';
import { connectionComplexity, ConnectionType, PageArgs } from '../../graphql/connection.js';
import { Project } from '../projects/project.model.js';
import { authorizeProject } from '../projects/project.policy.js';
import { authorizeApp } from './app.policy.js';
import { User } from '../users/user.model.js';
import { FlowerApp } from './flower-app.model.js';
import { UploadScalar } from './uploaded-archive.js';

@ObjectType()
export class FlowerAppConnection extends ConnectionType('FlowerApp', FlowerApp) {}

@Resolver(() => FlowerApp)
export class AppResolver {
  @Query(() => FlowerApp, { nullable: true })
  async flowerApp(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<FlowerApp> {
    return (await authorizeApp(ctx, id, 'read')).record;
  }

  @Mutation(() => FlowerApp, { description: 'Validates the ZIP completely, then stores it; the same bytes again return the same app.' })
  async uploadApp(
    @Arg('projectId', () => ID) projectId: string,
    @Arg('file', () => UploadScalar) file: Promise<FileUpload>,
    @Ctx() ctx: Context,
  ): Promise<FlowerApp> {
    const { project, userId } = await authorizeProject(ctx, projectId, 'uploadApp');
    return ctx.services.apps.upload(project._id, userId, file);
  }

  @Mutation(() => Boolean, { description: 'Refused while a job that has not finished uses the app.' })
  async deleteApp(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<boolean> {
    const { record } = await authorizeApp(ctx, id, 'deleteApp');
    await ctx.services.apps.delete(record);
    return true;
  }

  @FieldResolver(() => Project)
  async project(@Root() app: FlowerApp, @Ctx() ctx: Context): Promise<Project> {
    return (await ctx.loaders.project.load(app.projectId.toHexString()))!;
  }

  @FieldResolver(() => User)
  async uploadedBy(@Root() app: FlowerApp, @Ctx() ctx: Context): Promise<User> {
    return (await ctx.loaders.user.load(app.uploadedById.toHexString()))!;
  }

  @FieldResolver(() => GraphQLJSONObject, { description: 'The [tool.flwr.app.config] table: the keys a run may override, with their defaults.' })
  runConfigDefaults(@Root() app: FlowerApp): Record<string, unknown> {
    return JSON.parse(app.runConfigDefaultsJson) as Record<string, unknown>;
  }
}

@Resolver(() => Project)
export class ProjectAppsResolver {
  @FieldResolver(() => FlowerAppConnection, { complexity: connectionComplexity })
  apps(@Root() project: Project, @Args(() => PageArgs) args: PageArgs, @Ctx() ctx: Context) {
    return ctx.loaders.grouped.load(`Project.apps ${JSON.stringify(args)}`, project._id,
      (projectIds) => ctx.services.apps.pagesByProject(projectIds, args));
  }
}
