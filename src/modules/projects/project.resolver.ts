import { Arg, Args, ArgsType, Ctx, Field, FieldResolver, ID, Mutation, ObjectType, Query, Resolver, Root } from 'type-graphql';
import type { Context } from '../../app/context.js';
import type { Page } from '../../db/paging.js';
import { connectionComplexity, ConnectionType, PageArgs } from '../../graphql/connection.js';
import { parseId } from '../../graphql/ids.js';
import { User } from '../users/user.model.js';
import { CreateProjectInput, UpdateProjectInput } from './project.inputs.js';
import { Project, ProjectMember, ProjectRole } from './project.model.js';
import { authorizeProject, requireViewer, roleOf } from './project.policy.js';

@ObjectType()
export class ProjectConnection extends ConnectionType('Project', Project) {}

@ArgsType()
class ProjectsArgs extends PageArgs {
  @Field(() => String, { nullable: true, description: 'Part of the name, in any case.' })
  search?: string | null;
}

@Resolver(() => Project)
export class ProjectResolver {
  @Query(() => ProjectConnection, { description: 'The projects you are a member of, newest first.', complexity: connectionComplexity })
  projects(@Args(() => ProjectsArgs) args: ProjectsArgs, @Ctx() ctx: Context): Promise<Page<Project>> {
    const viewer = requireViewer(ctx);
    return ctx.services.projects.list(viewer.userId, args);
  }

  @Query(() => Project, { nullable: true })
  async project(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<Project> {
    return (await authorizeProject(ctx, id, 'read')).project;
  }

  @Mutation(() => Project)
  createProject(@Arg('input', () => CreateProjectInput) input: CreateProjectInput, @Ctx() ctx: Context): Promise<Project> {
    return ctx.services.projects.create(requireViewer(ctx).userId, input);
  }

  @Mutation(() => Project)
  async updateProject(
    @Arg('id', () => ID) id: string,
    @Arg('input', () => UpdateProjectInput) input: UpdateProjectInput,
    @Ctx() ctx: Context,
  ): Promise<Project> {
    const { project } = await authorizeProject(ctx, id, 'updateProject');
    return ctx.services.projects.update(project, input);
  }

  @Mutation(() => Boolean, { description: 'Deletes the project with its apps, configs and jobs; refused while a job runs.' })
  async deleteProject(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<boolean> {
    const { project } = await authorizeProject(ctx, id, 'deleteProject');
    await ctx.services.projects.delete(project);
    return true;
  }

  @Mutation(() => Project, { description: 'Adds a member, or changes the role of one already in the project.' })
  async addProjectMember(
    @Arg('projectId', () => ID) projectId: string,
    @Arg('username', () => String) username: string,
    @Arg('role', () => ProjectRole) role: ProjectRole,
    @Ctx() ctx: Context,
  ): Promise<Project> {
    const { project } = await authorizeProject(ctx, projectId, 'manageMembers');
    return ctx.services.projects.setMember(project, username, role);
  }

  @Mutation(() => Project, { description: 'Owners remove members; the last owner cannot be removed.' })
  async removeProjectMember(
    @Arg('projectId', () => ID) projectId: string,
    @Arg('userId', () => ID) userId: string,
    @Ctx() ctx: Context,
  ): Promise<Project> {
    const { project } = await authorizeProject(ctx, projectId, 'manageMembers');
    return ctx.services.projects.removeMember(project, parseId(userId, 'userId'));
  }

  @Mutation(() => Boolean, { description: 'Leaves a project you are a member of; its last owner cannot leave.' })
  async leaveProject(@Arg('projectId', () => ID) projectId: string, @Ctx() ctx: Context): Promise<boolean> {
    const { project, userId } = await authorizeProject(ctx, projectId, 'read');
    await ctx.services.projects.removeMember(project, parseId(userId, 'userId'));
    return true;
  }

  @FieldResolver(() => User, { description: 'The first owner in the member list.' })
  async owner(@Root() project: Project, @Ctx() ctx: Context): Promise<User> {
    const owner = project.members.find((m) => m.role === ProjectRole.OWNER)!;
    return (await ctx.loaders.user.load(owner.userId.toHexString()))!;
  }

  @FieldResolver(() => ProjectRole)
  myRole(@Root() project: Project, @Ctx() ctx: Context): ProjectRole {
    return roleOf(project, requireViewer(ctx).userId)!;
  }

  @FieldResolver(() => [ProjectMember])
  members(@Root() project: Project): ProjectMember[] {
    return project.members;
  }
}

@Resolver(() => ProjectMember)
export class ProjectMemberResolver {
  @FieldResolver(() => User)
  async user(@Root() member: ProjectMember, @Ctx() ctx: Context): Promise<User> {
    return (await ctx.loaders.user.load(member.userId.toHexString()))!;
  }
}
