import { chmod, mkdir, open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { ArchiveSource } from './source.js';
import { verifiedChunks, type ZipEntry } from './zip.js';

const FILE_MODE = 0o644;

export async function makeDirectory(directory: string, createdPaths: string[]): Promise<void> {
  const firstCreated = await mkdir(directory, { recursive: true });
  if (firstCreated) createdPaths.push(firstCreated);
}

/** Writes one entry's checked content to a new file (never following or overwriting anything), mode 0644. */
export async function writeEntryFile(source: ArchiveSource, entry: ZipEntry, filePath: string, createdPaths: string[]): Promise<void> {
  await makeDirectory(path.dirname(filePath), createdPaths);
  // 'wx' never follows or overwrites something already there.
  const file = await open(filePath, 'wx', FILE_MODE);
  createdPaths.push(filePath);
  try {
    for await (const chunk of verifiedChunks(source, entry)) await writeAll(file, chunk);
  } finally {
    await file.close();
  }
  // Exactly 0644, whatever the process umask.
  await chmod(filePath, FILE_MODE);
}

/** write() may write only part of a chunk (a full disk, a signal). */
async function writeAll(file: FileHandle, chunk: Buffer): Promise<void> {
  for (let written = 0; written < chunk.length;) {
    written += (await file.write(chunk, written)).bytesWritten;
  }
}

