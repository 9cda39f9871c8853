import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { constants } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Types } from 'mongoose';
import { deleteStoredFile, fileBucket } from '../../db/files.js';
import { isDuplicateKeyError } from '../../errors.js';
import { CheckpointModel, type Checkpoint } from './checkpoint.model.js';
import { NpzError, readNpzLayout } from './checkpoint.npz.js';
import type { TrainingJob } from './training-job.model.js';

const BUCKET_NAME = 'checkpoints';

/**
 * The models runs saved: each round's .npz, streamed into GridFS (and out again) a chunk at a
 * time, whatever its size, and its record. Which ones a job keeps is TrainingService's to say.
 */
export class CheckpointService {
  /**
   * Stores the .npz the ServerApp shim wrote for `round`, hashing it on the way, and removes the
   * file. A checkpoint already stored (an event delivered again) is left as it is. Throws NpzError
   * for a file that is not a plain, uncompressed .npz of its own (a link is refused).
   */
  async store(job: TrainingJob, round: number, file: string): Promise<Checkpoint | undefined> {
    if (await CheckpointModel.exists({ jobId: job._id, round })) {
      await rm(file, { force: true });
      return undefined;
    }
    const handle = await openOwnFile(file);
    let upload;
    let arrays;
    const hash = createHash('sha256');
    let sizeBytes = 0;
    try {
      arrays = await readNpzLayout(handle);
      upload = this.bucket().openUploadStream(`${job._id.toHexString()}-round-${round}.npz`, { metadata: { jobId: job._id, round } });
      const measure = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          hash.update(chunk);
          sizeBytes += chunk.length;
          done(null, chunk);
        },
      });
      await pipeline(handle.createReadStream({ start: 0, autoClose: false }), measure, upload);
    } finally {
      await handle.close();
    }
    try {
      const checkpoint = (await CheckpointModel.create({
        jobId: job._id, projectId: job.projectId, round, sizeBytes, sha256: hash.digest('hex'), arrays, fileId: upload.id,
      })).toObject();
      await rm(file, { force: true });
      return checkpoint;
    } catch (error) {
      await this.deleteFile(upload.id as Types.ObjectId);
      if (!isDuplicateKeyError(error)) throw error;
      await rm(file, { force: true });
      return undefined;
    }
  }

  /** A job's kept checkpoints, by ascending round. */
  list(jobId: Types.ObjectId): Promise<Checkpoint[]> {
    return CheckpointModel.find({ jobId }).sort({ round: 1 }).lean<Checkpoint[]>().exec();
  }

  /** The kept checkpoints of many jobs, by job id (ascending rounds). */
  async listForJobs(jobIds: readonly Types.ObjectId[]): Promise<Map<string, Checkpoint[]>> {
    const found = await CheckpointModel.find({ jobId: { $in: jobIds } }).sort({ round: 1 }).lean<Checkpoint[]>().exec();
    const byJob = new Map<string, Checkpoint[]>(jobIds.map((id) => [id.toHexString(), []]));
    for (const checkpoint of found) byJob.get(checkpoint.jobId.toHexString())?.push(checkpoint);
    return byJob;
  }

  get(jobId: Types.ObjectId, round: number): Promise<Checkpoint | null> {
    return CheckpointModel.findOne({ jobId, round }).lean<Checkpoint>().exec();
  }

  getById(id: Types.ObjectId): Promise<Checkpoint | null> {
    return CheckpointModel.findById(id).lean<Checkpoint>().exec();
  }

  /** The .npz, byte for byte, or the bytes from `start` up to `end` (exclusive). */
  open(checkpoint: Checkpoint, range?: { start: number; end: number }): Readable {
    return this.bucket().openDownloadStream(checkpoint.fileId, range);
  }

  /** Copies the .npz to a file (a fork's starting model). */
  async writeTo(checkpoint: Checkpoint, file: string): Promise<void> {
    await pipeline(this.open(checkpoint), createWriteStream(file, { mode: 0o600 }));
  }

  /** Deletes these checkpoints, files first (a record without its file would offer a download that fails). */
  async delete(checkpoints: readonly Checkpoint[]): Promise<void> {
    for (const checkpoint of checkpoints) {
      await this.deleteFile(checkpoint.fileId);
      await CheckpointModel.deleteOne({ _id: checkpoint._id }).exec();
    }
  }

  async deleteAllForJobs(jobIds: readonly Types.ObjectId[]): Promise<void> {
    await this.delete(await CheckpointModel.find({ jobId: { $in: jobIds } }).lean<Checkpoint[]>().exec());
  }

  private deleteFile(fileId: Types.ObjectId): Promise<void> {
    return deleteStoredFile(this.bucket(), fileId);
  }

  private bucket() {
    return fileBucket(BUCKET_NAME);
  }
}

/**
 * Opens a file the run wrote for itself: not a symbolic link, not a hard link to something else,
 * a regular file. The app runs code of its own beside the shim and could announce any path.
 */
async function openOwnFile(file: string): Promise<FileHandle> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    throw new NpzError(`cannot open ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const stats = await handle.stat();
  if (!stats.isFile() || stats.nlink !== 1) {
    await handle.close();
    throw new NpzError(`${file} is not a file of its own`);
  }
  return handle;
}
