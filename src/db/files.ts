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
