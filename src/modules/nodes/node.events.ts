import { topic } from '../../pubsub/pubsub.js';
import type { Deployment, DeploymentLogLine } from './deployment.model.js';
import type { Node } from './node.model.js';

/** A node's status (or last-seen time) changed. */
export const nodeEvents = (projectId: string) => topic<Node>(`nodes.${projectId}`);

export type DeploymentEvent = { type: 'log'; line: DeploymentLogLine } | { type: 'updated'; deployment: Deployment };
export const deploymentEvents = (deploymentId: string) => topic<DeploymentEvent>(`deployment.${deploymentId}`);
/** Tells deployers that a deployment was queued. */
export const deployerWakeUps = topic<Record<string, never>>('deployer.wake-up');
