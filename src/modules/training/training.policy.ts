import type { Context } from '../../app/context.js';
import { authorizeInProject, type Caller } from '../projects/project.policy.js';

/** A training job the caller may act on, by the rules of its project. */
export function authorizeJob(ctx: Caller & Context, id: string, action: 'read' | 'cancelTraining') {
  return authorizeInProject(ctx, (key) => ctx.loaders.job.load(key), id, action, 'Training job');
}
