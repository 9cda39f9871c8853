import { Types } from 'mongoose';
import { LogLineStore } from '../../db/log-lines.js';
import { badUserInput, conflict, isDuplicateKeyError } from '../../errors.js';
import { normalizeText, textViolation } from '../../graphql/text.js';
import type { PubSub } from '../../pubsub/pubsub.js';
import { DeploymentLifecycle, type DeploymentOutcome } from './deployment.lifecycle.js';
import { DeploymentLogLineModel, DeploymentModel, DeploymentStatus, type Deployment, type DeploymentLogLine } from './deployment.model.js';
import { deployerWakeUps, deploymentEvents, nodeEvents } from './node.events.js';
import type { RegisterNodeInput } from './node.inputs.js';
import { NodeModel, NodeStatus, type Node } from './node.model.js';

/**
 * What only the part of Pollen that runs Flower and Ansible can do for nodes. The runner
 * (src/runner/remote/) implements it; this module only stores and publishes.
 */
export interface NodeHosting {
  /** The SSH public key that deployments log in with. */
  deployPublicKey(): Promise<string>;
  /** Stops and removes the SuperNode from its host (best effort) and revokes its key at the SuperLink. */
  uninstall(node: Node): Promise<void>;
}

const MAX_NAME_LENGTH = 64;
const MAX_PARTITION_ATTEMPTS = 20;
const DEPLOYMENT_LOG_LINES_KEPT = 20_000;
/** A RUNNING deployment whose deployer has not said it lives for this long belongs to an instance that died. */
const DEPLOYMENT_STALE_MS = 60_000;
// A host name (RFC 1123 labels), an IPv4 address or an IPv6 address; nothing Ansible would read as options.
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$|^[0-9A-Fa-f:.]+$/;
const SSH_USER = /^[a-z_][a-z0-9_.-]{0,31}$/i;

export class NodeService {
  /** A deployment's states and transitions: the only code that writes a deployment's status. */
  readonly deploymentLifecycle: DeploymentLifecycle;
  private hosting?: NodeHosting;
  private readonly logLines = new LogLineStore<'deploymentId', DeploymentLogLine>(DeploymentLogLineModel, 'deploymentId',
    { kept: DEPLOYMENT_LOG_LINES_KEPT, trimEvery: 1000 });

  constructor(
    private readonly pubsub: PubSub,
    /** Whether a REMOTE job of the project has not finished (the training service knows; it asks this one about nodes). */
    private readonly remoteJobsUnfinished: (projectId: Types.ObjectId) => Promise<boolean>,
  ) {
    this.deploymentLifecycle = new DeploymentLifecycle(pubsub);
  }

  /** Set once the runner exists (it needs the services first). */
  attachHosting(hosting: NodeHosting): void {
    this.hosting = hosting;
  }

  private get host(): NodeHosting {
    if (!this.hosting) throw new Error('no node hosting attached');
    return this.hosting;
  }

  deployPublicKey(): Promise<string> {
    return this.host.deployPublicKey();
  }

  async register(projectId: Types.ObjectId, input: RegisterNodeInput): Promise<Node> {
    const name = normalizeText(input.name);
    const violations = [textViolation(name, 'name', { maxLength: MAX_NAME_LENGTH })].filter((v) => v !== undefined);
    const host = input.host.trim();
    if (!HOST.test(host) || host.length > 253) violations.push({ field: 'host', message: 'must be a host name or an IP address' });
    const sshUser = input.sshUser.trim();
    if (!SSH_USER.test(sshUser)) violations.push({ field: 'sshUser', message: 'must be a user name (letters, digits, _ . -)' });
    const sshPort = input.sshPort ?? 22;
    if (!Number.isInteger(sshPort) || sshPort < 1 || sshPort > 65535) violations.push({ field: 'sshPort', message: 'must be 1 to 65535' });
    if (violations.length > 0) throw badUserInput(violations);

    const nameKey = name.toLowerCase();
    for (let attempt = 0; attempt < MAX_PARTITION_ATTEMPTS; attempt += 1) {
      if (await NodeModel.exists({ projectId, nameKey })) throw conflict(`This project already has a node named "${name}".`);
      const taken = new Set((await NodeModel.find({ projectId }, { partitionId: 1 }).lean<Node[]>().exec()).map((n) => n.partitionId));
      let partitionId = 0;
      while (taken.has(partitionId)) partitionId += 1;
      try {
        const node = (await NodeModel.create({
          projectId, name, nameKey, host, sshUser, sshPort, status: NodeStatus.REGISTERED, partitionId,
        })).toObject();
        this.publish(node);
        return node;
      } catch (error) {
        // Someone registered a node at the same moment: the name or the partition was taken.
        if (!isDuplicateKeyError(error)) throw error;
      }
    }
    throw conflict('Nodes were registered in this project at the same time: try again.');
  }

  get(id: string | Types.ObjectId): Promise<Node | null> {
    return NodeModel.findById(id).lean<Node>().exec();
  }

  list(projectId: Types.ObjectId): Promise<Node[]> {
    return NodeModel.find({ projectId }).sort({ partitionId: 1 }).lean<Node[]>().exec();
  }

  countRegistered(projectId: Types.ObjectId): Promise<number> {
    return NodeModel.countDocuments({ projectId }).exec();
  }

  countOnline(projectId: Types.ObjectId): Promise<number> {
    return NodeModel.countDocuments({ projectId, status: NodeStatus.ONLINE }).exec();
  }

  /** The project's nodes on `node`'s host that come before it (their SuperNodes take the ports before its one). */
  countEarlierOnSameHost(node: Node): Promise<number> {
    return NodeModel.countDocuments({ projectId: node.projectId, host: node.host, partitionId: { $lt: node.partitionId } }).exec();
  }

  /** The project's nodes that are not ONLINE, in partition order. */
  notOnline(projectId: Types.ObjectId): Promise<Node[]> {
    return NodeModel.find({ projectId, status: { $ne: NodeStatus.ONLINE } }).sort({ partitionId: 1 }).lean<Node[]>().exec();
  }

  /** The project's nodes whose key is registered at its SuperLink. */
  registeredAtSuperLink(projectId: Types.ObjectId): Promise<Node[]> {
    return NodeModel.find({ projectId, flowerNodeId: { $ne: null } }).lean<Node[]>().exec();
  }

  /** Projects that have nodes registered at their SuperLink: their federations run. */
  async projectsWithSuperLinks(): Promise<Types.ObjectId[]> {
    return NodeModel.distinct('projectId', { flowerNodeId: { $ne: null } }).exec();
  }

  /** Queues a run of the deploy playbook; a deployer picks it up. A node has one deployment at a time. */
  async deploy(node: Node, creatorId: string): Promise<Deployment> {
    const active = await DeploymentModel.findOne({
      nodeId: node._id, status: { $in: [DeploymentStatus.QUEUED, DeploymentStatus.RUNNING] },
    }).lean<Deployment>().exec();
    if (active) throw conflict('This node is being deployed already.', { deploymentId: active._id.toHexString() });
    const deployment = (await DeploymentModel.create({
      nodeId: node._id, projectId: node.projectId, status: DeploymentStatus.QUEUED, createdById: new Types.ObjectId(creatorId),
    })).toObject();
    await this.setStatus(node._id, { status: NodeStatus.DEPLOYING });
    this.pubsub.publish(deployerWakeUps, {});
    return deployment;
  }

  /** Removes the node from its host and from the project; refused while a REMOTE job of the project may use it. */
  async remove(node: Node): Promise<void> {
    if (await this.remoteJobsUnfinished(node.projectId)) throw conflict('A REMOTE training job of this project has not finished: cancel it or let it finish first.');
    if (await DeploymentModel.exists({ nodeId: node._id, status: { $in: [DeploymentStatus.QUEUED, DeploymentStatus.RUNNING] } })) {
      throw conflict('This node is being deployed: wait for the deployment to end.');
    }
    await this.host.uninstall(node);
    const deployments = await DeploymentModel.find({ nodeId: node._id }, { _id: 1 }).lean<Deployment[]>().exec();
    await this.logLines.deleteAll(deployments.map((d) => d._id));
    await DeploymentModel.deleteMany({ nodeId: node._id }).exec();
    await NodeModel.deleteOne({ _id: node._id }).exec();
  }

  /** Writes a change of status or last-seen time, and tells subscribers when the status changed. */
  async setStatus(nodeId: Types.ObjectId, changes: Partial<Pick<Node, 'status' | 'lastSeenAt' | 'flowerNodeId'>>): Promise<Node | null> {
    const before = await NodeModel.findById(nodeId).lean<Node>().exec();
    if (!before) return null;
    const node = await NodeModel.findOneAndUpdate({ _id: nodeId }, { $set: changes }, { returnDocument: 'after' }).lean<Node>().exec();
    if (node && node.status !== before.status) this.publish(node);
    return node;
  }

  deployments(nodeId: Types.ObjectId, last: number): Promise<Deployment[]> {
    return DeploymentModel.find({ nodeId }).sort({ createdAt: -1, _id: -1 }).limit(last).lean<Deployment[]>().exec();
  }

  getDeployment(id: string): Promise<Deployment | null> {
    return DeploymentModel.findById(id).lean<Deployment>().exec();
  }

  /**
   * A deployment ended: its outcome recorded, and a node whose deployment failed marked FAILED
   * (one that succeeded gets its status from its SuperLink, see NodeHosting).
   */
  async deploymentEnded(deployment: Deployment, outcome: DeploymentOutcome): Promise<Deployment> {
    if (!outcome.ok) await this.setStatus(deployment.nodeId, { status: NodeStatus.FAILED });
    const ended = await this.deploymentLifecycle.ended(deployment._id, outcome);
    this.logLines.forget(deployment._id);
    return ended;
  }

  /** Fails the deployments that dead deployers left RUNNING, and their nodes. */
  async reconcileDeployments(running: ReadonlySet<string>): Promise<void> {
    for (const deployment of await this.deploymentLifecycle.reconcile(running, DEPLOYMENT_STALE_MS)) {
      await this.setStatus(deployment.nodeId, { status: NodeStatus.FAILED });
    }
  }

  async appendDeploymentLogs(deploymentId: Types.ObjectId, lines: Array<{ at: Date; line: string }>): Promise<void> {
    for (const line of await this.logLines.append(deploymentId, lines)) {
      this.pubsub.publish(deploymentEvents(deploymentId.toHexString()), { type: 'log', line });
    }
  }

  deploymentLogs(deploymentId: Types.ObjectId, last: number, afterSeq = 0): Promise<DeploymentLogLine[]> {
    return this.logLines.last(deploymentId, last, afterSeq);
  }

  /** Uninstalls every node of a project that is being deleted (best effort), then forgets them. */
  async removeAllInProject(projectId: Types.ObjectId): Promise<void> {
    if (await DeploymentModel.exists({ projectId, status: { $in: [DeploymentStatus.QUEUED, DeploymentStatus.RUNNING] } })) {
      throw conflict('A node of this project is being deployed: wait for the deployment to end.');
    }
    for (const node of await this.list(projectId)) await this.host.uninstall(node);
    const deployments = await DeploymentModel.find({ projectId }, { _id: 1 }).lean<Deployment[]>().exec();
    await this.logLines.deleteAll(deployments.map((d) => d._id));
    await DeploymentModel.deleteMany({ projectId }).exec();
    await NodeModel.deleteMany({ projectId }).exec();
  }

  private publish(node: Node): void {
    this.pubsub.publish(nodeEvents(node.projectId.toHexString()), node);
  }
}
