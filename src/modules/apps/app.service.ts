import { availableParallelism } from 'node:os';
import type { Readable } from 'node:stream';
import type { FileUpload } from 'graphql-upload-ts';
import mongoose, { Types } from 'mongoose';
import { conflict, isDuplicateKeyError } from '../../errors.js';
import { findPage, type Page, type PageArgs } from '../../graphql/connection.js';
import type { TrainingService } from '../training/training.service.js';
import { archiveTooLarge, readAppArchive, type AppArchive, type ArchiveLimits } from './app-archive.js';
import { FlowerAppModel, type FlowerApp } from './flower-app.model.js';

const BUCKET_NAME = 'app_archives';

/** Runs at most `limit` tasks at once; the others wait in line, first come, first served. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(limit: number) {
    this.free = limit;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      // The slot goes straight to the next in line, if any.
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/**
 * Uploads read into memory and checked at once, per process. Checking can cost up to
 * maxUncompressedBytes of inflating (zlib in the thread pool, CRC-32 on the main thread) and holds
 * up to maxBytes in memory; 50 concurrent zip-bomb uploads checked all at once kept every core busy,
 * and other clients' requests waited behind them. Half the cores check uploads and the other half
 * keep serving; the uploads waiting their turn stay in their temporary files.
 */
const checking = new Slots(Math.max(1, Math.floor(availableParallelism() / 2)));

export class AppService {
  constructor(private readonly limits: ArchiveLimits, private readonly training: TrainingService) {}

  /**
   * Validates the whole archive before writing anything; the same bytes uploaded to the same
   * project again return the app that already holds them.
   */
  async upload(projectId: Types.ObjectId, uploaderId: string, upload: Promise<FileUpload>): Promise<FlowerApp> {
    const { bytes, archive } = await checking.run(async () => {
      const bytes = await this.readUpload(upload);
      return { bytes, archive: await readAppArchive(bytes, this.limits) };
    });
    const existing = await FlowerAppModel.findOne({ projectId, sha256: archive.sha256 }).lean<FlowerApp>().exec();
    if (existing && !existing.deletedAt) return existing;

    const archiveFileId = await this.storeArchive(bytes, projectId, archive.sha256);
    if (existing) {
      // Uploaded again after it was deleted: the same record comes back to life.
      const record = appRecord(projectId, uploaderId, archive, archiveFileId);
      return (await FlowerAppModel.findOneAndUpdate({ _id: existing._id }, { $set: { ...record, deletedAt: null } },
        { returnDocument: 'after' }).lean<FlowerApp>().exec())!;
    }
    try {
      return (await FlowerAppModel.create(appRecord(projectId, uploaderId, archive, archiveFileId))).toObject();
    } catch (error) {
      await this.bucket().delete(archiveFileId);
      if (!isDuplicateKeyError(error)) throw error;
      // A concurrent upload of the same bytes won: answer with its app.
      return (await FlowerAppModel.findOne({ projectId, sha256: archive.sha256 }).lean<FlowerApp>().exec())!;
    }
  }

  list(projectId: Types.ObjectId, args: PageArgs): Promise<Page<FlowerApp>> {
    return findPage(FlowerAppModel, { projectId, deletedAt: null }, args);
  }

  /** The stored archive, byte for byte as it was uploaded (only for apps not deleted). */
  openArchive(app: FlowerApp): Readable {
    return this.bucket().openDownloadStream(app.archiveFileId!);
  }

  async readArchive(app: FlowerApp): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.openArchive(app)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async delete(app: FlowerApp): Promise<void> {
    if (await this.training.hasUnfinishedJobs({ appId: app._id })) {
      throw conflict('A training job that has not finished uses this app: cancel it or let it finish first.');
    }
    await FlowerAppModel.updateOne({ _id: app._id }, { $set: { deletedAt: new Date(), archiveFileId: null } }).exec();
    if (app.archiveFileId) await this.deleteArchive(app.archiveFileId);
  }

  async deleteAllInProject(projectId: Types.ObjectId): Promise<void> {
    const apps = await FlowerAppModel.find({ projectId }, { archiveFileId: 1 }).lean<FlowerApp[]>().exec();
    await FlowerAppModel.deleteMany({ projectId }).exec();
    for (const app of apps) if (app.archiveFileId) await this.deleteArchive(app.archiveFileId);
  }

  private async readUpload(upload: Promise<FileUpload>): Promise<Buffer> {
    const tooLarge = () => archiveTooLarge(size, this.limits.maxBytes);
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of (await upload).createReadStream()) {
        size += (chunk as Buffer).length;
        if (size > this.limits.maxBytes) throw tooLarge();
        chunks.push(chunk as Buffer);
      }
    } catch (error) {
      // graphql-upload-ts ends the stream with a 413 error once MAX_UPLOAD_BYTES is passed.
      if ((error as { status?: number }).status === 413) throw tooLarge();
      throw error;
    }
    return Buffer.concat(chunks, size);
  }

  private async storeArchive(bytes: Buffer, projectId: Types.ObjectId, sha256: string): Promise<Types.ObjectId> {
    const stream = this.bucket().openUploadStream(`${sha256}.zip`, {
      metadata: { projectId, sha256 },
      contentType: 'application/zip',
    } as object);
    await new Promise<void>((resolve, reject) => {
      stream.once('finish', () => resolve());
      stream.once('error', reject);
      stream.end(bytes);
    });
    return stream.id as Types.ObjectId;
  }

  private async deleteArchive(fileId: Types.ObjectId): Promise<void> {
    try {
      await this.bucket().delete(fileId);
    } catch (error) {
      // Already gone (an earlier, interrupted delete): nothing left to do.
      if (!/not found/i.test(String((error as Error).message))) throw error;
    }
  }

  private bucket() {
    return new mongoose.mongo.GridFSBucket(mongoose.connection.db!, { bucketName: BUCKET_NAME });
  }
}

function appRecord(projectId: Types.ObjectId, uploaderId: string, archive: AppArchive, archiveFileId: Types.ObjectId) {
  return {
    projectId,
    name: archive.name,
    version: archive.version,
    publisher: archive.publisher,
    sha256: archive.sha256,
    sizeBytes: archive.sizeBytes,
    files: archive.files,
    rootPrefix: archive.rootPrefix,
    components: archive.components,
    runConfigDefaultsJson: JSON.stringify(archive.runConfigDefaults),
    archiveFileId,
    uploadedById: new Types.ObjectId(uploaderId),
  };
}
