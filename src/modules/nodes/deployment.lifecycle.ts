import type { Types } from 'mongoose';
import { claim } from '../../db/claims.js';
import { notFound } from '../../errors.js';
import type { PubSub } from '../../pubsub/pubsub.js';
import { DeploymentModel, DeploymentStatus, type Deployment } from './deployment.model.js';
import { deploymentEvents } from './node.events.js';

const { QUEUED, RUNNING, SUCCEEDED, FAILED } = DeploymentStatus;

/** Where a deployment may go from each status; the one place that says so. */
const TRANSITIONS: Record<DeploymentStatus, readonly DeploymentStatus[]> = {
  [QUEUED]: [RUNNING],
  [RUNNING]: [SUCCEEDED, FAILED],
  [SUCCEEDED]: [],
  [FAILED]: [],
};

const REASONS = {
  deployerDied: 'Interrupted: the Pollen instance running it stopped.',
  couldNotRun: (why: string) => `Pollen could not run the deployment: ${why}`,
};

/** The claim that gives a queued deployment to exactly one deployer (see db/claims.ts). */
const RUN_CLAIM = 'deployment-run:';
const QUEUE_READ = 10;

/** How a playbook run ended. */
export type DeploymentOutcome = { ok: true } | { ok: false; failedTask: string | null; failure: string | null };

/**
 * A deployment's life: its states and transitions, the claim that gives it to one deployer, the
 * heartbeat that says its deployer lives, and the reasons it fails with. Deployers report what
 * happened; only this writes a deployment's status.
 */
export class DeploymentLifecycle {
  constructor(private readonly pubsub: PubSub) {}

  /** The oldest queued deployment, claimed for the caller; undefined when none. */
  async claimNext(): Promise<Deployment | undefined> {
    const queued = await DeploymentModel.find({ status: QUEUED }).sort({ createdAt: 1, _id: 1 }).limit(QUEUE_READ)
      .lean<Deployment[]>().exec();
    for (const deployment of queued) {
      if (await claim(RUN_CLAIM + deployment._id.toHexString(), deployment.projectId.toHexString())) return deployment;
    }
    return undefined;
  }

  started(id: Types.ObjectId): Promise<Deployment> {
    return this.transition(id, RUNNING, {});
  }

  ended(id: Types.ObjectId, outcome: DeploymentOutcome): Promise<Deployment> {
    return outcome.ok
      ? this.transition(id, SUCCEEDED, { finishedAt: new Date() })
      : this.transition(id, FAILED, { failedTask: outcome.failedTask, failureReason: outcome.failure, finishedAt: new Date() });
  }

  /** Why a deployment could not even run, in the words its failureReason uses. */
  couldNotRun(error: Error): DeploymentOutcome & { failure: string } {
    return { ok: false, failedTask: null, failure: REASONS.couldNotRun(error.message) };
  }

  /** Says that the deployments a deployer runs still have one. */
  async heartbeat(ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await DeploymentModel.updateMany({ _id: { $in: ids } }, { $set: { updatedAt: new Date() } }).exec();
  }

  /**
   * Deployments left RUNNING by a deployer that stopped (no heartbeat for `staleMs`) cannot be
   * resumed: they fail, keeping their output. Returns them, for their nodes.
   */
  async reconcile(running: ReadonlySet<string>, staleMs: number): Promise<Deployment[]> {
    const stale = await DeploymentModel.find({ status: RUNNING, updatedAt: { $lt: new Date(Date.now() - staleMs) } })
      .lean<Deployment[]>().exec();
    const orphans = stale.filter((deployment) => !running.has(deployment._id.toHexString()));
    for (const deployment of orphans) await this.ended(deployment._id, { ok: false, failedTask: null, failure: REASONS.deployerDied });
    return orphans;
  }

  private async transition(id: Types.ObjectId, to: DeploymentStatus, changes: Partial<Deployment>): Promise<Deployment> {
    const current = await DeploymentModel.findById(id).lean<Deployment>().exec();
    if (!current) throw notFound('Deployment');
    if (!TRANSITIONS[current.status].includes(to)) return current;
    const deployment = await DeploymentModel.findOneAndUpdate({ _id: id, status: current.status }, { $set: { ...changes, status: to } },
      { returnDocument: 'after' }).lean<Deployment>().exec();
    if (!deployment) return (await DeploymentModel.findById(id).lean<Deployment>().exec()) ?? current;
    this.pubsub.publish(deploymentEvents(id.toHexString()), { type: 'updated', deployment });
    return deployment;
  }
}
