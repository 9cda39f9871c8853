import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';
import { GraphQLScalarType } from 'graphql';
import { GraphQLUpload, type FileUpload } from 'graphql-upload-ts';
import { badUserInput } from '../../errors.js';
import { archiveTooLarge } from './app-archive.js';
import { readChunks, type ArchiveSource } from './archive/source.js';

/** Hashing reads this much at a time. */
const HASH_CHUNK_BYTES = 256 * 1024;

/**
 * An uploaded archive, read at offsets straight from the temporary file graphql-upload-ts wrote it
 * to, so that it is never in memory all at once. (Streaming it out of that file allocates a fresh
 * buffer for every 16 KB instead, and that garbage, collected late, cost about half the archive's
 * size again.)
 */
export class UploadedArchive implements ArchiveSource {
  private constructor(private readonly file: FileHandle, readonly size: number) {}

  static async open(upload: Promise<FileUpload>, maxBytes: number): Promise<UploadedArchive> {
    let received: FileUpload;
    let keepFile: ReturnType<FileUpload['createReadStream']>;
    try {
      received = await upload;
      // An open read stream keeps graphql-upload-ts from deleting the file (once the response is
      // sent, or the client leaves) until it is destroyed; it throws if the upload already failed.
      keepFile = received.createReadStream();
      // Its errors are those of the upload, handled here through the capacitor.
      keepFile.on('error', () => {});
    } catch (error) {
      throw uploadFailure(error, maxBytes);
    }
    let file: FileHandle | undefined;
    try {
      if (!received.capacitor.writableFinished) {
        await once(received.capacitor, 'finish').catch((error: unknown) => Promise.reject(uploadFailure(error, maxBytes)));
      }
      // Our own handle reads on even once the file is deleted.
      file = await open(temporaryPath(received), 'r');
      return new UploadedArchive(file, (await file.stat()).size);
    } catch (error) {
      await file?.close();
      throw error;
    } finally {
      keepFile.destroy();
    }
  }

  async read(offset: number, length: number, scratch = Buffer.allocUnsafe(length)): Promise<Buffer> {
    const { bytesRead } = await this.file.read(scratch, 0, length, offset);
    return scratch.subarray(0, bytesRead);
  }

  async sha256(): Promise<string> {
    const hash = createHash('sha256');
    for await (const chunk of this.chunksInPlace(HASH_CHUNK_BYTES)) hash.update(chunk);
    return hash.digest('hex');
  }

  /** The whole archive, `chunkBytes` at a time, all read into one buffer: each chunk is valid until the next is asked for. */
  chunksInPlace(chunkBytes: number): AsyncGenerator<Buffer> {
    return readChunks(this, 0, this.size, chunkBytes, Buffer.allocUnsafe(chunkBytes));
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

/**
 * graphql-upload-ts's Upload scalar, whose promise fails with a client error (see uploadFailure)
 * when the request did not bring the file: type-graphql awaits the promise before the resolver
 * runs, so this is the one place that sees that failure.
 */
export const UploadScalar = new GraphQLScalarType<Promise<FileUpload>, never>({
  ...GraphQLUpload.toConfig(),
  parseValue: (value) => {
    const upload = (GraphQLUpload.parseValue(value) as Promise<FileUpload>)
      .catch((error: unknown) => Promise.reject(uploadFailure(error)));
    // Variables are also coerced where nobody awaits the file (the operation gate prices them).
    upload.catch(() => undefined);
    return upload;
  },
});

/**
 * Why an upload could not be received, for the client: over MAX_UPLOAD_BYTES (graphql-upload-ts
 * fails it with status 413), or a request that did not carry the file whole (a multipart body cut
 * short, a map naming a part that never came). A system error (the disk) stays Pollen's own.
 */
export function uploadFailure(error: unknown, maxBytes?: number): unknown {
  const { status, syscall, message } = error as { status?: number; syscall?: string; message?: string };
  if (status === 413 && maxBytes !== undefined) return archiveTooLarge(0, maxBytes);
  if (syscall !== undefined) return error;
  return badUserInput([{ field: 'file', message: `was not received whole (${message ?? 'the upload failed'}): send it again` }]);
}

/**
 * fs-capacitor's file. It does not say where it is publicly; graphql-upload-ts bundles the version
 * read here, and an upgrade that moves it fails every upload loudly (apps.test.ts), not silently.
 */
function temporaryPath(upload: FileUpload): string {
  const path = (upload.capacitor as unknown as { _path?: unknown })._path;
  if (typeof path !== 'string') throw new Error("graphql-upload-ts no longer keeps the upload's temporary file path in capacitor._path");
  return path;
}
