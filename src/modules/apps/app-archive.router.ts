import { pipeline } from 'node:stream/promises';
import { Router, type Request } from 'express';
import type { Context } from '../../app/context.js';
import { authorizeApp } from './app.policy.js';

/**
 * GET /apps/:id/archive — the stored ZIP, byte for byte, so a user can fetch exactly what ran.
 * Same access rule as reading the app; send the access token as a Bearer Authorization header.
 */
export function appArchiveRouter(contextOf: (req: Request) => Promise<Context>): Router {
  const router = Router();
  router.get('/apps/:id/archive', async (req, res, next) => {
    try {
      const ctx = await contextOf(req);
      const { record: app } = await authorizeApp(ctx, req.params.id, 'read');
      res.set({
        'Content-Type': 'application/zip',
        'Content-Length': String(app.sizeBytes),
        'Content-Disposition': `attachment; filename="${fileNamePart(app.name)}-${fileNamePart(app.version)}.zip"`,
        'Cache-Control': 'private, no-store',
        'Digest': `sha-256=${Buffer.from(app.sha256, 'hex').toString('base64')}`,
      });
      await pipeline(ctx.services.apps.openArchive(app), res);
    } catch (error) {
      next(error);
    }
  });
  return router;
}

function fileNamePart(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]/g, '_');
}
