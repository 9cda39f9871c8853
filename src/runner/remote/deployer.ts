import { rm } from 'node:fs/promises';
import path from 'node:path';
import { WorkQueue } from '../../db/work-queue.js';
import type { Logger } from '../../logger.js';
import type { DeploymentOutcome } from '../../modules/nodes/deployment.lifecycle.js';
import type { Deployment } from '../../modules/nodes/deployment.model.js';
import { deployerWakeUps } from '../../modules/nodes/node.events.js';
import type { NodeService } from '../../modules/nodes/node.service.js';
import type { PubSub } from '../../pubsub/pubsub.js';
import { PLAYBOOKS, runPlaybook } from './ansible.js';
import type { RemoteFederations } from './remote-federations.js';

const POLL_MS = 5_000;
const LOG_FLUSH_MS = 200;
/** A first deployment copies and installs a wheelhouse; a slow host may need a while. */
const PLAYBOOK_TIMEOUT_MS = 20 * 60_000;
const HEARTBEAT_MS = 15_000;
const RECONCILE_MS = 60_000;
/** Deployments mostly wait on SSH and pip on the hosts, so a few run at once. */
const MAX_PARALLEL_DEPLOYMENTS = 4;

/**
 * Runs queued deployments, a few at a time per instance: ansible-playbook with the deploy playbook,
 * its output stored line by line and streamed, the failing task named when it fails. It reports
 * to the deployments' lifecycle and never writes a status itself.
 */
export class Deployer {
  private readonly queue: WorkQueue<Deployment, Record<string, never>>;
  /** Aborted at stop: running playbooks are stopped. */
  private readonly halt = new AbortController();

  constructor(
    private readonly nodes: NodeService,
    pubsub: PubSub,
    private readonly federations: RemoteFederations,
    private readonly logger: Logger,
  ) {
    this.queue = new WorkQueue({
      claimNext: () => nodes.deploymentLifecycle.claimNext(),
      idOf: (deployment) => deployment._id.toHexString(),
      run: (deployment) => this.run(deployment),
      renew: (running) => nodes.deploymentLifecycle.heartbeat([...running]),
      reconcile: (running) => nodes.reconcileDeployments(running),
    }, {
      concurrency: MAX_PARALLEL_DEPLOYMENTS, pollMs: POLL_MS, renewMs: HEARTBEAT_MS, reconcileMs: RECONCILE_MS, wakeUps: deployerWakeUps,
    }, pubsub, logger);
  }

  start(): Promise<void> {
    return this.queue.start();
  }

  async stop(): Promise<void> {
    await this.queue.stop();
    this.halt.abort();
    await this.queue.drained();
  }

  private async run(queued: Deployment): Promise<void> {
    const id = queued._id;
    const log = this.logger.child({ deploymentId: id.toHexString(), nodeId: queued.nodeId.toHexString() });
    await this.nodes.deploymentLifecycle.started(id);
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
    const workDir = path.join(this.federations.dataDir, 'deployments', id.toHexString());
    let outcome: DeploymentOutcome;
    const node = await this.nodes.get(queued.nodeId);
    try {
      if (!node) throw new Error('the node was removed');
      const plan = await this.federations.prepareDeployment(node);
      const result = await runPlaybook({
        ...plan, playbook: PLAYBOOKS.deploy, target: node, workDir, timeoutMs: PLAYBOOK_TIMEOUT_MS, signal: this.halt.signal,
        onLine: (line) => pending.push({ at: new Date(), line }),
      });
      outcome = result.ok ? { ok: true } : { ok: false, failedTask: result.failedTask, failure: result.failure };
    } catch (error) {
      const failed = this.nodes.deploymentLifecycle.couldNotRun(error as Error);
      pending.push({ at: new Date(), line: failed.failure });
      outcome = failed;
      log.warn({ err: error }, 'deployment could not run');
    } finally {
      clearInterval(flusher);
      await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
    }
    await flush();
    // The node's status is settled before the deployment is reported finished.
    if (outcome.ok) await this.federations.settleDeployedNode(node!);
    await this.nodes.deploymentEnded(queued, outcome);
    log.info({ ok: outcome.ok, failedTask: outcome.ok ? null : outcome.failedTask }, 'deployment finished');
  }
}
