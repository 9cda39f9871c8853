import { pipeline } from 'node:stream/promises';
import { Router, type Request, type Response } from 'express';
import type { Context } from '../../app/context.js';
import { badUserInput, notFound } from '../../errors.js';
import { planSafetensors, keepRanges, SafetensorsRefusal } from './checkpoint.safetensors.js';
import { CheckpointFormat, type Checkpoint } from './checkpoint.model.js';
import { authorizeJob } from './training.policy.js';

/**
 * GET /jobs/:jobId/checkpoints/:round[?format=npz|safetensors] — a kept checkpoint's arrays,
 * streamed from the database a chunk at a time. Same access rule as reading the job: a bearer
 * Authorization header, or a `link` signed for this path (Checkpoint.downloadLink). A job the
 * caller may not see, and a checkpoint no longer kept, are 404. The npz answers byte ranges
 * (a broken download of a large model resumes).
 */
export function checkpointRouter(contextOf: (req: Request) => Promise<Context>): Router {
  const router = Router();
  router.get('/jobs/:jobId/checkpoints/:round', async (req, res, next) => {
    try {
      const ctx = await contextOf(req);
      const format = formatOf(req.query.format);
      const { record: job } = await authorizeJob(ctx, String(req.params.jobId), 'read');
      const round = /^\d{1,9}$/.test(String(req.params.round)) ? Number(req.params.round) : undefined;
      const checkpoint = round === undefined ? null : await ctx.services.training.checkpoint(job._id, round);
      if (!checkpoint) throw notFound(`Checkpoint of round ${req.params.round}`);
      const name = `${job._id.toHexString()}-round-${checkpoint.round}`;
      res.set({ 'Cache-Control': 'private, no-store', 'X-Content-Type-Options': 'nosniff' });
      if (format === CheckpointFormat.SAFETENSORS) await sendSafetensors(ctx, checkpoint, name, res);
      else await sendNpz(ctx, checkpoint, name, req, res);
    } catch (error) {
      next(error instanceof SafetensorsRefusal ? badUserInput([{ field: 'format', message: error.message }]) : error);
    }
  });
  return router;
}

const FORMATS = Object.values(CheckpointFormat);

function formatOf(value: unknown): CheckpointFormat {
  if (value === undefined) return CheckpointFormat.NPZ;
  if (FORMATS.includes(value as CheckpointFormat)) return value as CheckpointFormat;
  throw badUserInput([{ field: 'format', message: `must be ${FORMATS.join(' or ')}` }]);
}

async function sendNpz(ctx: Context, checkpoint: Checkpoint, name: string, req: Request, res: Response): Promise<void> {
  res.set({
    'Content-Type': 'application/octet-stream',
    'Content-Disposition': `attachment; filename="${name}.npz"`,
    'Accept-Ranges': 'bytes',
    'ETag': `"${checkpoint.sha256}"`,
    'Digest': `sha-256=${Buffer.from(checkpoint.sha256, 'hex').toString('base64')}`,
  });
  const ranges = req.get('range') ? req.range(checkpoint.sizeBytes) : undefined;
  if (ranges === -1) {
    res.status(416).set('Content-Range', `bytes */${checkpoint.sizeBytes}`).end();
    return;
  }
  // One range is served as asked; several (rare) or a malformed header get the whole file.
  if (Array.isArray(ranges) && ranges.length === 1 && (req.get('if-range') ?? `"${checkpoint.sha256}"`) === `"${checkpoint.sha256}"`) {
    const { start, end } = ranges[0]!;
    res.status(206).set({ 'Content-Range': `bytes ${start}-${end}/${checkpoint.sizeBytes}`, 'Content-Length': String(end - start + 1) });
    await pipeline(ctx.services.training.openCheckpoint(checkpoint, { start, end: end + 1 }), res);
    return;
  }
  res.set('Content-Length', String(checkpoint.sizeBytes));
  await pipeline(ctx.services.training.openCheckpoint(checkpoint), res);
}

async function sendSafetensors(ctx: Context, checkpoint: Checkpoint, name: string, res: Response): Promise<void> {
  const plan = planSafetensors(checkpoint.arrays, {
    format: 'np', job: checkpoint.jobId.toHexString(), round: String(checkpoint.round), npz_sha256: checkpoint.sha256,
  });
  res.set({
    'Content-Type': 'application/octet-stream',
    'Content-Disposition': `attachment; filename="${name}.safetensors"`,
    'Content-Length': String(plan.sizeBytes),
  });
  res.write(plan.header);
  if (plan.ranges.length === 0) {
    res.end();
    return;
  }
  const span = { start: plan.ranges[0]!.start, end: plan.ranges.at(-1)!.end };
  await pipeline(ctx.services.training.openCheckpoint(checkpoint, span), keepRanges(plan.ranges), res);
}
