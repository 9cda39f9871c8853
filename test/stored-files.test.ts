import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import mongoose from 'mongoose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { fileBucket, readStoredFile } from '../src/db/files.js';

const CHUNK = 255 * 1024;
const bytes = randomBytes(40 * CHUNK + 1234);

beforeAll(async () => {
  await mongoose.connect(`${inject('mongoUri')}files_${randomUUID().replaceAll('-', '').slice(0, 12)}`);
});
afterAll(async () => {
  await mongoose.connection.dropDatabase();
  await mongoose.disconnect();
});

async function read(bucket: string, fileId: mongoose.Types.ObjectId, range: { start: number; end: number }): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of readStoredFile(bucket, fileId, range)) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** Stores `data` as GridFS does, its chunks inserted in the order `order` gives. */
async function storeInOrder(bucket: string, data: Buffer, order: (chunks: number[]) => number[]): Promise<mongoose.Types.ObjectId> {
  const db = mongoose.connection.db!;
  const fileId = new mongoose.Types.ObjectId();
  const count = Math.ceil(data.length / CHUNK);
  for (const n of order(Array.from({ length: count }, (_, i) => i))) {
    await db.collection(`${bucket}.chunks`).insertOne({ files_id: fileId, n, data: new mongoose.mongo.Binary(data.subarray(n * CHUNK, (n + 1) * CHUNK)) });
  }
  await db.collection(`${bucket}.files`).insertOne({ _id: fileId, length: data.length, chunkSize: CHUNK, uploadDate: new Date(), filename: 'f' });
  return fileId;
}

describe('stored files', () => {
  it('read back byte for byte, whole and in ranges, as the driver stored them', async () => {
    const upload = fileBucket('plain').openUploadStream('model.npz');
    await new Promise<void>((resolve, reject) => Readable.from([bytes]).pipe(upload).on('finish', resolve).on('error', reject));
    const fileId = upload.id as mongoose.Types.ObjectId;
    const hash = (data: Buffer) => createHash('sha256').update(data).digest('hex');
    expect(hash(await read('plain', fileId, { start: 0, end: bytes.length }))).toBe(hash(bytes));
    for (const [start, end] of [[0, 1], [CHUNK - 1, CHUNK + 1], [100, 17 * CHUNK + 5], [bytes.length - 10, bytes.length], [5, 5]]) {
      expect((await read('plain', fileId, { start: start!, end: end! })).equals(bytes.subarray(start, end)), `${start}-${end}`).toBe(true);
    }
  });

  it('are put in order when stored out of order, near or far', async () => {
    const pairsSwapped = await storeInOrder('near', bytes, (chunks) => chunks.filter((n) => n % 2 === 0)
      .flatMap((n) => (n + 1 < chunks.length ? [n + 1, n] : [n])));
    expect((await read('near', pairsSwapped, { start: 0, end: bytes.length })).equals(bytes)).toBe(true);
    // More than 64 chunks ahead of their turn: the rest is asked for sorted.
    const long = randomBytes(70 * CHUNK);
    const reversed = await storeInOrder('far', long, (chunks) => chunks.reverse());
    expect((await read('far', reversed, { start: 0, end: long.length })).equals(long)).toBe(true);
    expect((await read('far', reversed, { start: 3 * CHUNK + 7, end: 69 * CHUNK })).equals(long.subarray(3 * CHUNK + 7, 69 * CHUNK))).toBe(true);
  });

  it('fail loudly when a chunk is missing', async () => {
    const holed = await storeInOrder('holed', bytes, (chunks) => chunks.filter((n) => n !== 7));
    await expect(read('holed', holed, { start: 0, end: bytes.length })).rejects.toThrow(/chunk 7 is missing/);
  });
});
