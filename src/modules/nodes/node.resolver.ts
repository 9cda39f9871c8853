import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root, Subscription } from 'type-graphql';
import type { Context } from '../../app/context.js';
import { parseId } from '../../graphql/ids.js';
import { notFound } from '../../errors.js';
import { Project } from '../projects/project.model.js';
import { authorizeInProject, authorizeProject, type Caller, type ProjectAction } from '../projects/project.policy.js';
import { LogLineObject } from '../../graphql/log-line.js';
import { Deployment, type DeploymentLogLine } from './deployment.model.js';
import { RegisterNodeInput } from './node.inputs.js';
import { Node } from './node.model.js';
import { deploymentLogStream, nodeStatusStream } from './node.streams.js';

const DEFAULT_DEPLOYMENTS = 10;
const DEFAULT_LOG_LINES = 200;

function authorizeNode(ctx: Caller & Context, id: string, action: ProjectAction) {
  return authorizeInProject(ctx, (key) => ctx.loaders.node.load(key), id, action, 'Node');
}

async function authorizeDeployment(ctx: Context, id: string): Promise<Deployment> {
  const deployment = await ctx.services.nodes.getDeployment(parseId(id, 'deploymentId').toHexString());
  if (!deployment) throw notFound('Deployment');
  await authorizeProject(ctx, deployment.projectId.toHexString(), 'read', 'Deployment');
  return deployment;
}

const clamp = (value: number | null | undefined, fallback: number, max: number) => Math.min(Math.max(value ?? fallback, 1), max);

@Resolver(() => Node)
export class NodeResolver {
  @Query(() => Node, { nullable: true })
  async node(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<Node> {
    return (await authorizeNode(ctx, id, 'read')).record;
  }

  @Mutation(() => Node, { description: 'Records a host for a SuperNode of the project; deploy it with deployNode.' })
  async registerNode(@Arg('input', () => RegisterNodeInput) input: RegisterNodeInput, @Ctx() ctx: Context): Promise<Node> {
    const { project } = await authorizeProject(ctx, input.projectId, 'manageNodes');
    return ctx.services.nodes.register(project._id, input);
  }

  @Mutation(() => Deployment, { description: 'Runs the deploy playbook against the node (again, safely); returns at once.' })
  async deployNode(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<Deployment> {
    const { record, access } = await authorizeNode(ctx, id, 'manageNodes');
    const deployment = await ctx.services.nodes.deploy(record, access.userId);
    ctx.loaders.node.clear(record._id.toHexString()); // now DEPLOYING
    return deployment;
  }

  @Mutation(() => Boolean, { description: "Stops and removes the SuperNode from its host (best effort) and revokes its key." })
  async removeNode(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<boolean> {
    const { record } = await authorizeNode(ctx, id, 'manageNodes');
    await ctx.services.nodes.remove(record);
    return true;
  }

  @Subscription(() => Node, {
    description: "Every status change of the project's nodes.",
    subscribe: async ({ args, context }) => {
      const { project } = await authorizeProject(context as Context, args.projectId as string, 'read');
      return nodeStatusStream((context as Context).services, project._id.toHexString());
    },
  })
  nodeStatusChanged(@Root() node: Node, @Arg('projectId', () => ID) _projectId: string): Node {
    return node;
  }

  @Subscription(() => LogLineObject, {
    description: 'Ansible output, line by line; completes when the deployment ends.',
    subscribe: async ({ args, context }) => {
      const deployment = await authorizeDeployment(context as Context, args.deploymentId as string);
      return deploymentLogStream((context as Context).services, deployment);
    },
  })
  deploymentLogs(@Root() line: DeploymentLogLine, @Arg('deploymentId', () => ID) _deploymentId: string): DeploymentLogLine {
    return line;
  }

  @FieldResolver(() => Project)
  async project(@Root() node: Node, @Ctx() ctx: Context): Promise<Project> {
    return (await ctx.loaders.project.load(node.projectId.toHexString()))!;
  }

  @FieldResolver(() => [Deployment], { description: `The most recent first (${DEFAULT_DEPLOYMENTS} by default).` })
  deployments(@Root() node: Node, @Ctx() ctx: Context, @Arg('last', () => Int, { nullable: true }) last?: number): Promise<Deployment[]> {
    return ctx.services.nodes.deployments(node._id, clamp(last, DEFAULT_DEPLOYMENTS, 100));
  }
}

@Resolver(() => Deployment)
export class DeploymentResolver {
  @FieldResolver(() => Node)
  async node(@Root() deployment: Deployment, @Ctx() ctx: Context): Promise<Node> {
    const node = await ctx.loaders.node.load(deployment.nodeId.toHexString());
    if (!node) throw notFound('Node');
    return node;
  }

  @FieldResolver(() => [LogLineObject], { description: `The last lines of Ansible output (${DEFAULT_LOG_LINES} by default).` })
  logs(@Root() deployment: Deployment, @Ctx() ctx: Context, @Arg('last', () => Int, { nullable: true }) last?: number): Promise<DeploymentLogLine[]> {
    return ctx.services.nodes.deploymentLogs(deployment._id, clamp(last, DEFAULT_LOG_LINES, 20_000));
  }
}

@Resolver(() => Project)
export class ProjectNodesResolver {
  @FieldResolver(() => [Node])
  nodes(@Root() project: Project, @Ctx() ctx: Context): Promise<Node[]> {
    return ctx.services.nodes.list(project._id);
  }

  @FieldResolver(() => String, { description: "The SSH public key that Pollen deploys with: add it to each node host's authorized_keys." })
  deployPublicKey(@Ctx() ctx: Context): Promise<string> {
    return ctx.services.nodes.deployPublicKey();
  }
}
