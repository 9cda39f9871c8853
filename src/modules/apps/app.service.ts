import { availableParallelism } from 'node:os';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FileUpload } from 'graphql-upload-ts';
import { Types } from 'mongoose';
import { deleteStoredFile, fileBucket, readStoredFile } from '../../db/files.js';
import { readById } from '../../db/loaders.js';
import { conflict, isDuplicateKeyError } from '../../errors.js';
import { findPages, type Page, type PageRequest } from '../../db/paging.js';
import type { TrainingService } from '../training/training.service.js';
import { extractAppArchive, readAppArchive, type AppArchive, type ArchiveLimits } from './app-archive.js';
import { FlowerAppModel, type FlowerApp } from './flower-app.model.js';
import { UploadedArchive } from './uploaded-archive.js';

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
 * Uploads checked at once, per process. Checking can cost up to maxUncompressedBytes of inflating
 * (zlib in the thread pool, CRC-32 on the main thread); 50 concurrent zip-bomb uploads checked all
 * at once kept every core busy, and other clients' requests waited behind them. Half the cores
 * check uploads and the other half keep serving; the uploads waiting their turn stay in their
 * temporary files.
 */
const checking = new Slots(Math.max(1, Math.floor(availableParallelism() / 2)));

export class AppService {
  constructor(private readonly limits: ArchiveLimits, private readonly training: TrainingService) {}

  /**
   * Validates the whole archive before writing anything; the same bytes uploaded to the same
   * project again return the app that already holds them. The archive stays on disk throughout.
   */
  async upload(projectId: Types.ObjectId, uploaderId: string, upload: Promise<FileUpload>): Promise<FlowerApp> {
    const { uploaded, archive } = await checking.run(async () => {
      const uploaded = await UploadedArchive.open(upload, this.limits.maxBytes);
      try {
        return { uploaded, archive: await readAppArchive(uploaded, this.limits) };
      } catch (error) {
        await uploaded.close();
        throw error;
      }
    });
    try {
      return await this.saveApp(projectId, uploaderId, uploaded, archive);
    } finally {
      await uploaded.close();
    }
  }

  private async saveApp(projectId: Types.ObjectId, uploaderId: string, uploaded: UploadedArchive, archive: AppArchive): Promise<FlowerApp> {
    const existing = await FlowerAppModel.findOne({ projectId, sha256: archive.sha256 }).lean<FlowerApp>().exec();
    if (existing && !existing.deletedAt) return existing;

    const archiveFileId = await this.storeArchive(uploaded, projectId, archive.sha256);
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

  /** An app by id, deleted ones included (their jobs keep their history). */
  get(id: string): Promise<FlowerApp | null> {
    return readById<FlowerApp>(FlowerAppModel, id);
  }

  /** A page of (not deleted) apps for each project, by project id. */
  pagesByProject(projectIds: readonly Types.ObjectId[], args: PageRequest): Promise<Map<string, Page<FlowerApp>>> {
    return findPages(FlowerAppModel, 'projectId', projectIds, { deletedAt: null }, args);
  }

  /** The stored archive, byte for byte as it was uploaded (only for apps not deleted). */
  openArchive(app: FlowerApp): Readable {
    return readStoredFile(BUCKET_NAME, app.archiveFileId!, { start: 0, end: app.sizeBytes });
  }

  /**
   * Writes a stored app's files into `targetDir`, checking the archive again as it goes; returns
   * the app. An app deleted since its job was queued cannot be unpacked.
   */
  async unpack(appId: Types.ObjectId, targetDir: string): Promise<FlowerApp> {
    const app = await FlowerAppModel.findById(appId).lean<FlowerApp>().exec();
    if (!app?.archiveFileId) throw new Error('the app was deleted');
    const chunks: Buffer[] = [];
    for await (const chunk of this.openArchive(app)) chunks.push(chunk as Buffer);
    const bytes = Buffer.concat(chunks);
    await extractAppArchive(bytes, archiveOf(app), targetDir, { ...this.limits, maxBytes: bytes.length });
    return app;
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

  private async storeArchive(uploaded: UploadedArchive, projectId: Types.ObjectId, sha256: string): Promise<Types.ObjectId> {
    const stream = this.bucket().openUploadStream(`${sha256}.zip`, {
      metadata: { projectId, sha256 },
      contentType: 'application/zip',
    } as object);
    // One GridFS chunk per read, each far over the stream's highWaterMark: pipeline waits for it to
    // be stored ('drain') before reading the next into the same buffer.
    await pipeline(uploaded.chunksInPlace(stream.chunkSizeBytes), stream);
    return stream.id as Types.ObjectId;
  }

  private deleteArchive(fileId: Types.ObjectId): Promise<void> {
    return deleteStoredFile(this.bucket(), fileId);
  }

  private bucket() {
    return fileBucket(BUCKET_NAME);
  }
}

/** What extractAppArchive needs to know of a stored app (it checks the bytes again itself). */
function archiveOf(app: FlowerApp): AppArchive {
  return {
    sha256: app.sha256, sizeBytes: app.sizeBytes, rootPrefix: app.rootPrefix, files: app.files, name: app.name,
    version: app.version, publisher: app.publisher, components: app.components,
    runConfigDefaults: JSON.parse(app.runConfigDefaultsJson),
  };
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
