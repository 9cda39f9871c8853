import { Readable } from 'node:stream';
import mongoose, { type Types } from 'mongoose';

export type FileBucket = InstanceType<typeof mongoose.mongo.GridFSBucket>;

/** A GridFS bucket of the connected database: files stored in chunks, read and written as streams. */
export function fileBucket(name: string): FileBucket {
  return new mongoose.mongo.GridFSBucket(mongoose.connection.db!, { bucketName: name });
}

/** Deletes a stored file; one already gone (an earlier, interrupted delete) leaves nothing to do. */
export async function deleteStoredFile(bucket: FileBucket, fileId: Types.ObjectId): Promise<void> {
  try {
    await bucket.delete(fileId);
  } catch (error) {
    if (!/not found/i.test(String((error as Error).message))) throw error;
  }
}

/** Chunks per reply when a stored file is read: about 4 MB with GridFS's 255 KB chunks. */
const CHUNKS_PER_REPLY = 16;
/** Chunks that may arrive ahead of their turn before a read asks the database to sort them. */
const MAX_CHUNKS_AHEAD = 64;

type StoredChunk = { n: number; data: { buffer: Uint8Array } };

/**
 * A stored file's bytes from `start` up to `end` (exclusive), with bounded memory whatever the
 * file's size. The driver's download stream sorts the chunks in the query and leaves the reply
 * size to the server: FerretDB then holds the whole file in memory to sort it (1.2 GB for a
 * 500 MB file) and answered in replies of hundreds of MB. Here the chunks are asked for in the
 * order they are stored, 16 per reply, and put in order as they come (they are stored nearly in
 * order: a few inserts are in flight at once); only if more than 64 arrive ahead of their turn is
 * the rest asked for sorted. A MongoDB server reads them in order from the {files_id, n} index
 * anyway. The chunks are checked as the driver checks them: in order, none missing, each as long
 * as it should be.
 */
export function readStoredFile(bucketName: string, fileId: Types.ObjectId, { start, end }: { start: number; end: number }): Readable {
  const db = mongoose.connection.db!;
  const failure = (what: string) => new Error(`stored file ${fileId.toHexString()}: ${what}`);
  return Readable.from((async function* () {
    const file = await db.collection<{ length: number; chunkSize: number }>(`${bucketName}.files`).findOne({ _id: fileId });
    if (!file) throw failure('missing');
    const last = Math.min(end, file.length);
    if (start >= last) return;
    const endChunk = Math.ceil(last / file.chunkSize);
    let next = Math.floor(start / file.chunkSize);
    const piece = (chunk: StoredChunk): Buffer => {
      const offset = chunk.n * file.chunkSize;
      const data = Buffer.from(chunk.data.buffer.buffer, chunk.data.buffer.byteOffset, chunk.data.buffer.byteLength);
      if (data.length !== Math.min(file.chunkSize, file.length - offset)) throw failure(`chunk ${chunk.n} has the wrong size`);
      return data.subarray(Math.max(0, start - offset), Math.min(data.length, last - offset));
    };
    const chunks = (sorted: boolean) => {
      const cursor = db.collection<StoredChunk>(`${bucketName}.chunks`)
        .find({ files_id: fileId, n: { $gte: next, $lt: endChunk } }).batchSize(CHUNKS_PER_REPLY);
      return sorted ? cursor.sort({ n: 1 }) : cursor;
    };
    const ahead = new Map<number, StoredChunk>();
    for (const sorted of [false, true]) {
      ahead.clear();
      const cursor = chunks(sorted);
      try {
        for await (const chunk of cursor) {
          if (chunk.n < next || ahead.has(chunk.n)) throw failure(`chunk ${chunk.n} is stored twice`);
          ahead.set(chunk.n, chunk);
          for (let due = ahead.get(next); due; due = ahead.get(next)) {
            ahead.delete(next);
            next += 1;
            yield piece(due);
          }
          if (ahead.size > MAX_CHUNKS_AHEAD) break;
        }
      } finally {
        await cursor.close();
      }
      if (ahead.size <= MAX_CHUNKS_AHEAD) break;
    }
    if (next !== endChunk) throw failure(`chunk ${next} is missing`);
  })(), { objectMode: false });
}
