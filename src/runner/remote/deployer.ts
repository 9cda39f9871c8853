import { rm } from 'node:fs/promises';
import path from 'node:path';
import { claim } from '../../db/claims.js';
import type { Logger } from '../../logger.js';
import { DeploymentModel, DeploymentStatus, type Deployment } from '../../modules/nodes/deployment.model.js';
import { NodeStatus } from '../../modules/nodes/node.model.js';
import { deployerWakeUps, type NodeService } from '../../modules/nodes/node.service.js';
import type { PubSub } from '../../pubsub/pubsub.js';
import { PLAYBOOKS, runPlaybook } from './ansible.js';
import type { RemoteFederations } from './remote-federations.js';

const POLL_MS = 5_000;
const LOG_FLUSH_MS = 200;
/** A first deployment copies and installs a wheelhouse; a slow host may need a while. */
const PLAYBOOK_TIMEOUT_MS = 20 * 60_000;
/** A RUNNING deployment whose runner has not touched it for this long belongs to an instance that died. */
const STALE_MS = 60_000;
const HEARTBEAT_MS = 15_000;
/** Deployments mostly wait on SSH and pip on the hosts, so a few run at once. */
const MAX_PARALLEL_DEPLOYMENTS = 4;

/**
 * Runs queued deployments, a few at a time per instance: ansible-playbook with the deploy playbook,
 * its output stored line by line and streamed, the failing task named when it fails.
 */
export class Deployer {
  private readonly timers: NodeJS.Timeout[] = [];
  private wakeUps?: AsyncIterableIterator<unknown>;
  private taking = false;
  private stopped = false;
  private readonly running = new Set<Promise<void>>();
  /** Aborted at stop: running playbooks are stopped. */
  private readonly halt = new AbortController();

  constructor(
    private readonly nodes: NodeService,
    private readonly pubsub: PubSub,
    private readonly federations: RemoteFederations,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    await this.failInterrupted();
    this.wakeUps = this.pubsub.subscribe(deployerWakeUps);
    void (async () => {
      for await (const _ of this.wakeUps!) void this.takeWork();
    })();
    this.timers.push(setInterval(() => void this.takeWork(), POLL_MS));
    this.timers.push(setInterval(() => void this.failInterrupted(), STALE_MS));
    void this.takeWork();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    await this.wakeUps?.return?.();
    this.halt.abort();
    await Promise.all(this.running);
  }

  private async takeWork(): Promise<void> {
    if (this.taking || this.stopped) return;
    this.taking = true;
    try {
      while (!this.stopped && this.running.size < MAX_PARALLEL_DEPLOYMENTS) {
        const queued = await DeploymentModel.find({ status: DeploymentStatus.QUEUED }).sort({ createdAt: 1, _id: 1 }).limit(10)
          .lean<Deployment[]>().exec();
        let next: Deployment | undefined;
        for (const deployment of queued) {
          if (await claim(`deployment-run:${deployment._id.toHexString()}`, deployment.projectId.toHexString())) {
            next = deployment;
            break;
          }
        }
        if (!next) break;
        const running = this.run(next)
          .catch((error) => this.logger.error({ err: error }, 'a deployment ended badly'))
          .finally(() => {
            this.running.delete(running);
            void this.takeWork();
          });
        this.running.add(running);
      }
    } catch (error) {
      this.logger.error({ err: error }, 'could not take queued deployments');
    } finally {
      this.taking = false;
    }
  }

  private async run(queued: Deployment): Promise<void> {
    const id = queued._id;
    const log = this.logger.child({ deploymentId: id.toHexString(), nodeId: queued.nodeId.toHexString() });
    await this.nodes.updateDeployment(id, { status: DeploymentStatus.RUNNING });
    let pending: Array<{ at: Date; line: string }> = [];
    let writing = Promise.resolve();
    const flush = () => {
      const lines = pending;
      pending = [];
      writing = writing.then(() => this.nodes.appendDeploymentLogs(id, lines))
        .catch((error) => log.error({ err: error }, 'could not store deployment output'));
      return writing;
    };
    const flusher = setInterval(() => void flush(), LOG_FLUSH_MS);
    const heartbeat = setInterval(() => void DeploymentModel.updateOne({ _id: id }, { $set: { updatedAt: new Date() } }).exec()
      .catch(() => undefined), HEARTBEAT_MS);
    const workDir = path.join(this.federations.dataDir, 'deployments', id.toHexString());
    let outcome: { status: DeploymentStatus; failedTask: string | null; failureReason: string | null };
    const node = await this.nodes.get(queued.nodeId);
    try {
      if (!node) throw new Error('the node was removed');
      const plan = await this.federations.prepareDeployment(node);
      const result = await runPlaybook({
        ...plan, playbook: PLAYBOOKS.deploy, target: node, workDir, timeoutMs: PLAYBOOK_TIMEOUT_MS, signal: this.halt.signal,
        onLine: (line) => pending.push({ at: new Date(), line }),
      });
      outcome = result.ok
        ? { status: DeploymentStatus.SUCCEEDED, failedTask: null, failureReason: null }
        : { status: DeploymentStatus.FAILED, failedTask: result.failedTask, failureReason: result.failure };
    } catch (error) {
      const reason = `Pollen could not run the deployment: ${(error as Error).message}`;
      pending.push({ at: new Date(), line: reason });
      outcome = { status: DeploymentStatus.FAILED, failedTask: null, failureReason: reason };
      log.warn({ err: error }, 'deployment could not run');
    } finally {
      clearInterval(flusher);
      clearInterval(heartbeat);
      await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
    }
    await flush();
    // The node's status is settled before the deployment is reported finished.
    if (outcome.status === DeploymentStatus.FAILED) await this.nodes.setStatus(queued.nodeId, { status: NodeStatus.FAILED });
    else await this.federations.settleDeployedNode(node!);
    await this.nodes.updateDeployment(id, { ...outcome, finishedAt: new Date() });
    log.info({ status: outcome.status, failedTask: outcome.failedTask }, 'deployment finished');
  }

  /** Deployments left RUNNING by an instance that stopped cannot be resumed: they fail, keeping their output. */
  private async failInterrupted(): Promise<void> {
    try {
      const stale = await DeploymentModel.find({
        status: DeploymentStatus.RUNNING, updatedAt: { $lt: new Date(Date.now() - STALE_MS) },
      }).lean<Deployment[]>().exec();
      for (const deployment of stale) {
        await this.nodes.setStatus(deployment.nodeId, { status: NodeStatus.FAILED });
        await this.nodes.updateDeployment(deployment._id, {
          status: DeploymentStatus.FAILED, failureReason: 'Interrupted: the Pollen instance running it stopped.', finishedAt: new Date(),
        });
      }
    } catch (error) {
      this.logger.warn({ err: error }, 'could not reconcile deployments');
    }
  }
}
