import { createHash } from 'node:crypto';

/**
 * An archive's bytes, readable at any offset, so that a reader can take the central directory and
 * each entry in turn without holding the whole archive in memory (an upload stays in its file).
 */
export interface ArchiveSource {
  readonly size: number;
  /**
   * `length` bytes from `offset`; callers keep within `size`. Given `scratch` (of `length` bytes
   * or more), a source may read into it rather than allocate: the bytes then last until it is reused.
   */
  read(offset: number, length: number, scratch?: Buffer): Promise<Buffer>;
  /** Hex SHA-256 of all the bytes. */
  sha256(): Promise<string>;
}

/** An archive already in memory; reads share its memory. */
export function bufferSource(bytes: Buffer): ArchiveSource {
  return {
    size: bytes.length,
    read: async (offset, length) => bytes.subarray(offset, offset + length),
    sha256: async () => createHash('sha256').update(bytes).digest('hex'),
  };
}

/** `length` bytes from `start`, read `chunkBytes` at a time as they are consumed, into `scratch` if given. */
export async function* readChunks(source: ArchiveSource, start: number, length: number, chunkBytes: number, scratch?: Buffer): AsyncGenerator<Buffer> {
  for (let offset = start, end = start + length; offset < end; offset += chunkBytes) {
    yield await source.read(offset, Math.min(chunkBytes, end - offset), scratch);
  }
}
