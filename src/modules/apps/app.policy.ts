import type { Context } from '../../app/context.js';
import { authorizeInProject, type ProjectAction } from '../projects/project.policy.js';

/** An app the caller may act on; deleted apps are gone for everything but their jobs' history. */
export function authorizeApp(ctx: Context, id: string, action: ProjectAction) {
  const loadLive = async (key: string) => {
    const app = await ctx.loaders.app.load(key);
    return app?.deletedAt ? null : app;
  };
  return authorizeInProject(ctx, loadLive, id, action, 'Flower App');
}
