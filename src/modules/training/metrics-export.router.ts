import { Router, type Request } from 'express';
import type { Context } from '../../app/context.js';
import { metricsCsv, metricsJson } from './round-metric.export.js';
import { authorizeJob } from './training.policy.js';

const CONTENT_TYPES = { csv: 'text/csv; charset=utf-8; header=present', json: 'application/json; charset=utf-8' };

/**
 * GET /jobs/:id/metrics.csv and /jobs/:id/metrics.json — a job's metrics for spreadsheets and
 * notebooks. Anyone who may read the job may download them; send the access token as a Bearer
 * Authorization header, as for the other downloads.
 */
export function metricsExportRouter(contextOf: (req: Request) => Promise<Context>): Router {
  const router = Router();
  router.get('/jobs/:id/metrics.:format', async (req, res, next) => {
    const { format } = req.params;
    if (format !== 'csv' && format !== 'json') return next();
    const ctx = await contextOf(req);
    const { record: job } = await authorizeJob(ctx, req.params.id, 'read');
    const id = job._id.toHexString();
    const metrics = await ctx.services.training.metrics(job._id);
    res.set({
      'Content-Type': CONTENT_TYPES[format],
      'Content-Disposition': `attachment; filename="job-${id}-metrics.${format}"`,
      'Cache-Control': 'private, no-store',
      'X-Content-Type-Options': 'nosniff',
    }).send(format === 'csv' ? metricsCsv(metrics) : metricsJson(id, metrics));
  });
  return router;
}
