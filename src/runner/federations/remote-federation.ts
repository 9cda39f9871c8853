import type { FlowerControl } from '../flower-control.js';
import type { Federation, RunSetup } from './federation.js';

/** The project's long-lived SuperLink and its deployed nodes (runner/remote/remote-federations.ts). */
export interface ProjectSuperLinks {
  superlinkFor(projectId: string): Promise<{ env: NodeJS.ProcessEnv; federation: string; control: FlowerControl }>;
  /** The project's nodes that are not ONLINE now, named with their status, for failure reasons. */
  offlineNodeNames(projectId: string): Promise<string[]>;
  /** Calls `listener` with how many of the project's nodes are ONLINE at each report of its SuperLink; returns the way to stop. */
  watchOnlineNodes(projectId: string, listener: (online: number) => void): () => void;
}

/** A REMOTE run uses its project's SuperLink, which runs for longer than any job and for every job of the project. */
export async function useRemoteFederation(setup: RunSetup, superlinks: ProjectSuperLinks): Promise<Federation> {
  const projectId = setup.job.projectId.toHexString();
  const link = await superlinks.superlinkFor(projectId);
  // Flower's strategies wait for a node that left for as long as it takes: the run fails as soon as
  // too few of the project's nodes are ONLINE to go on, rather than at ROUND_TIMEOUT.
  const { clients } = setup.job;
  const unwatch = superlinks.watchOnlineNodes(projectId, (online) => {
    if (online < clients) setup.cannotGoOn(`Only ${online} of the ${clients} nodes the run needs are ONLINE`);
  });
  return {
    name: link.federation,
    env: link.env,
    runArgs: [],
    control: link.control,
    // A failed REMOTE run names the project's nodes that are not ONLINE: the usual cause.
    async explainFailure(reason) {
      const offline = await superlinks.offlineNodeNames(projectId).catch(() => []);
      return offline.length === 0 ? reason : `${reason ?? 'The run failed.'} Nodes not ONLINE: ${offline.join(', ')}.`;
    },
    // The project's SuperLink outlives the run; Flower already stopped the run on it.
    stop: async () => unwatch(),
    release: async () => unwatch(),
  };
}
