import { closable } from '../../pubsub/pubsub.js';
import type { Services } from '../../app/services.js';
import { deploymentFinished, type Deployment, type DeploymentLogLine } from './deployment.model.js';
import type { Node } from './node.model.js';
import { deploymentEvents, nodeEvents } from './node.events.js';

// Every stream subscribes before it reads, so nothing published in between is missed.

/** Every status change of a project's nodes, for as long as the subscriber stays. */
export function nodeStatusStream(services: Services, projectId: string): AsyncIterableIterator<Node> {
  const events = services.pubsub.subscribe(nodeEvents(projectId));
  return closable(events, (async function* () {
    await events.ready;
    yield* events;
  })());
}

/** Ansible's output so far, then live lines (each once, in order); ends with the deployment. */
export function deploymentLogStream(services: Services, deployment: Deployment): AsyncIterableIterator<DeploymentLogLine> {
  const id = deployment._id.toHexString();
  const events = services.pubsub.subscribe(deploymentEvents(id));
  return closable(events, (async function* () {
    let lastSeq = 0;
    await events.ready;
    const current = (await services.nodes.getDeployment(id)) ?? deployment;
    for (const line of await services.nodes.deploymentLogs(deployment._id, Number.MAX_SAFE_INTEGER)) {
      lastSeq = line.seq;
      yield line;
    }
    if (deploymentFinished(current.status)) return;
    for await (const event of events) {
      if (event.type === 'log' && event.line.seq > lastSeq) {
        lastSeq = event.line.seq;
        yield event.line;
      }
      if (event.type === 'updated' && deploymentFinished(event.deployment.status)) return;
    }
  })());
}
