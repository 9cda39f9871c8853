import type { Context } from '../../app/context.js';
import { authorizeInProject, type ProjectAction } from '../projects/project.policy.js';

/** A training job the caller may act on: reading it (and its checkpoints), cancelling it, forking it. */
export function authorizeJob(ctx: Context, id: string, action: ProjectAction) {
  return authorizeInProject(ctx, (key) => ctx.loaders.job.load(key), id, action, 'Training job');
}
