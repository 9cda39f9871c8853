import { Arg, Ctx, FieldResolver, Resolver, Root } from 'type-graphql';
import type { Context } from '../../app/context.js';
import { requireViewer } from '../projects/project.policy.js';
import { Checkpoint, CheckpointFormat, CheckpointReason } from './checkpoint.model.js';
import type { KeptCheckpoint } from './training.service.js';

/** Where a checkpoint is downloaded, on Pollen's HTTP port (checkpoint.router.ts). */
export function checkpointPath(jobId: string, round: number): string {
  return `/jobs/${jobId}/checkpoints/${round}`;
}

@Resolver(() => Checkpoint)
export class CheckpointResolver {
  @FieldResolver(() => [CheckpointReason], { description: 'Why Pollen keeps it; several may apply.' })
  reasons(@Root() checkpoint: KeptCheckpoint): CheckpointReason[] {
    return checkpoint.reasons;
  }

  @FieldResolver(() => String, {
    description: 'Path on Pollen\'s HTTP port (same origin as /graphql) that answers GET with the arrays, with the same ' +
      'Authorization header as /graphql: `?format=npz` (default, numpy.load reads it, keys are the array names) or ' +
      '`?format=safetensors`.',
  })
  downloadPath(@Root() checkpoint: Checkpoint): string {
    return checkpointPath(checkpoint.jobId.toHexString(), checkpoint.round);
  }

  @FieldResolver(() => String, {
    description: 'downloadPath with `format` and a `link` parameter signed for the caller: a plain GET (a browser\'s link, ' +
      'curl without a header) downloads it for the next 5 minutes, as long as the caller\'s sign-in and access last.',
  })
  downloadLink(
    @Root() checkpoint: Checkpoint,
    @Ctx() ctx: Context,
    @Arg('format', () => CheckpointFormat, { defaultValue: CheckpointFormat.NPZ }) format: CheckpointFormat,
  ): string {
    const viewer = requireViewer(ctx);
    const path = checkpointPath(checkpoint.jobId.toHexString(), checkpoint.round);
    return `${path}?format=${format}&link=${ctx.services.auth.signLink(viewer, path)}`;
  }
}
