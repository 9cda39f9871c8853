import { Types } from 'mongoose';
import { badUserInput, conflict, isDuplicateKeyError, notFound } from '../../errors.js';
import { normalizeText, textViolation } from '../../graphql/text.js';
import { topic, type PubSub } from '../../pubsub/pubsub.js';
import { FederationKind, TrainingJobModel, UNFINISHED_STATUSES } from '../training/training-job.model.js';
import {
  DeploymentLogLineModel, DeploymentModel, DeploymentStatus, deploymentFinished, type Deployment, type DeploymentLogLine,
} from './deployment.model.js';
import type { RegisterNodeInput } from './node.inputs.js';
import { NodeModel, NodeStatus, type Node } from './node.model.js';

/** A node's status (or last-seen time) changed. */
export const nodeEvents = (projectId: string) => topic<Node>(`nodes.${projectId}`);

export type DeploymentEvent = { type: 'log'; line: DeploymentLogLine } | { type: 'updated'; deployment: Deployment };
export const deploymentEvents = (deploymentId: string) => topic<DeploymentEvent>(`deployment.${deploymentId}`);
/** Tells deployers that a deployment was queued. */
export const deployerWakeUps = topic<Record<string, never>>('deployer.wake-up');

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
// A host name (RFC 1123 labels), an IPv4 address or an IPv6 address; nothing Ansible would read as options.
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$|^[0-9A-Fa-f:.]+$/;
const SSH_USER = /^[a-z_][a-z0-9_.-]{0,31}$/i;

export class NodeService {
  private hosting?: NodeHosting;
  private readonly nextLogSeq = new Map<string, number>();

  constructor(private readonly pubsub: PubSub) {}

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

  countOnline(projectId: Types.ObjectId): Promise<number> {
    return NodeModel.countDocuments({ projectId, status: NodeStatus.ONLINE }).exec();
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
    const busy = await TrainingJobModel.exists({
      projectId: node.projectId, federation: FederationKind.REMOTE, status: { $in: UNFINISHED_STATUSES },
    });
    if (busy) throw conflict('A REMOTE training job of this project has not finished: cancel it or let it finish first.');
    if (await DeploymentModel.exists({ nodeId: node._id, status: { $in: [DeploymentStatus.QUEUED, DeploymentStatus.RUNNING] } })) {
      throw conflict('This node is being deployed: wait for the deployment to end.');
    }
    await this.host.uninstall(node);
    const deployments = await DeploymentModel.find({ nodeId: node._id }, { _id: 1 }).lean<Deployment[]>().exec();
    await DeploymentLogLineModel.deleteMany({ deploymentId: { $in: deployments.map((d) => d._id) } }).exec();
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

  async updateDeployment(id: Types.ObjectId, changes: Partial<Deployment>): Promise<Deployment> {
    const deployment = await DeploymentModel.findOneAndUpdate({ _id: id }, { $set: changes }, { returnDocument: 'after' })
      .lean<Deployment>().exec();
    if (!deployment) throw notFound('Deployment');
    this.pubsub.publish(deploymentEvents(id.toHexString()), { type: 'updated', deployment });
    if (deploymentFinished(deployment.status)) this.nextLogSeq.delete(id.toHexString());
    return deployment;
  }

  async appendDeploymentLogs(deploymentId: Types.ObjectId, lines: Array<{ at: Date; line: string }>): Promise<void> {
    if (lines.length === 0) return;
    const key = deploymentId.toHexString();
    let seq = this.nextLogSeq.get(key) ?? await this.lastLogSeq(deploymentId) + 1;
    const docs = lines.map(({ at, line }) => ({ deploymentId, seq: seq++, at, line }));
    this.nextLogSeq.set(key, seq);
    await DeploymentLogLineModel.insertMany(docs);
    for (const line of docs) this.pubsub.publish(deploymentEvents(key), { type: 'log', line });
    if (seq > DEPLOYMENT_LOG_LINES_KEPT && Math.floor((seq - 1) / 1000) !== Math.floor((seq - 1 - docs.length) / 1000)) {
      await DeploymentLogLineModel.deleteMany({ deploymentId, seq: { $lt: seq - DEPLOYMENT_LOG_LINES_KEPT } }).exec();
    }
  }

  async deploymentLogs(deploymentId: Types.ObjectId, last: number, afterSeq = 0): Promise<DeploymentLogLine[]> {
    const lines = await DeploymentLogLineModel.find({ deploymentId, seq: { $gt: afterSeq } }).sort({ seq: -1 }).limit(last)
      .lean<DeploymentLogLine[]>().exec();
    return lines.reverse();
  }

  /** Uninstalls every node of a project that is being deleted (best effort), then forgets them. */
  async removeAllInProject(projectId: Types.ObjectId): Promise<void> {
    if (await DeploymentModel.exists({ projectId, status: { $in: [DeploymentStatus.QUEUED, DeploymentStatus.RUNNING] } })) {
      throw conflict('A node of this project is being deployed: wait for the deployment to end.');
    }
    for (const node of await this.list(projectId)) await this.host.uninstall(node);
    const deployments = await DeploymentModel.find({ projectId }, { _id: 1 }).lean<Deployment[]>().exec();
    await DeploymentLogLineModel.deleteMany({ deploymentId: { $in: deployments.map((d) => d._id) } }).exec();
    await DeploymentModel.deleteMany({ projectId }).exec();
    await NodeModel.deleteMany({ projectId }).exec();
  }

  private publish(node: Node): void {
    this.pubsub.publish(nodeEvents(node.projectId.toHexString()), node);
  }

  private async lastLogSeq(deploymentId: Types.ObjectId): Promise<number> {
    const last = await DeploymentLogLineModel.findOne({ deploymentId }).sort({ seq: -1 }).lean<DeploymentLogLine>().exec();
    return last?.seq ?? 0;
  }
}
