import { rm } from 'node:fs/promises';
import path from 'node:path';
import { makeDirectory, writeEntryFile } from './archive/extract.js';
import { readCheckedEntries, type ArchiveLimits } from './archive/limits.js';
import { isMacOsNoise, resolveLayout } from './archive/layout.js';
import { checkComponentModules, checkPyprojectSize, parsePyproject, type AppMetadata } from './archive/pyproject.js';
import { bufferSource, type ArchiveSource } from './archive/source.js';
import { isDirectory, verifyEntries } from './archive/zip.js';

export { archiveTooLarge, invalidArchive, type ArchiveRejection } from './archive/errors.js';
export { DEFAULT_ARCHIVE_LIMITS, type ArchiveLimits } from './archive/limits.js';
export type { RunConfigValue } from './archive/pyproject.js';

/**
 * A Flower App archive, validated. Reading is split by concern under archive/: the ZIP format
 * (zip.ts), the limits an upload must keep (limits.ts), where the app sits in the archive
 * (layout.ts), what its pyproject.toml says (pyproject.ts), and writing it out (extract.ts).
 */
export interface AppArchive extends AppMetadata {
  /** Hex SHA-256 of the whole archive. */
  sha256: string;
  sizeBytes: number;
  /** '' when pyproject.toml is at the archive root, else the one top-level folder, e.g. 'myapp/'. */
  rootPrefix: string;
  /** Files (no folders) relative to the app root, sorted. */
  files: string[];
}

/**
 * Validates an uploaded Flower App completely, from its bytes: the ZIP structure, every entry's
 * path and size, every entry's data (inflated once, then discarded), the layout and pyproject.toml.
 * A source is read piece by piece, never whole. Bad input always ends in invalidArchive().
 */
export async function readAppArchive(bytes: Buffer | ArchiveSource, limits: ArchiveLimits): Promise<AppArchive> {
  const source = asSource(bytes);
  const entries = await readCheckedEntries(source, limits);
  const layout = resolveLayout(entries);
  checkPyprojectSize(layout.pyproject);
  const metadata = parsePyproject(await verifyEntries(source, entries, layout.pyproject));
  checkComponentModules(metadata.components, layout);
  return { sha256: await source.sha256(), sizeBytes: source.size, rootPrefix: layout.rootPrefix, files: layout.files, ...metadata };
}

/**
 * Writes the app's files (rootPrefix stripped, mode 0644) under targetDir, which should be new or
 * empty. The bytes are checked again from scratch and every limit is enforced while inflating;
 * on failure, whatever this call created is removed.
 */
export async function extractAppArchive(bytes: Buffer | ArchiveSource, archive: AppArchive, targetDir: string, limits: ArchiveLimits): Promise<void> {
  const source = asSource(bytes);
  if (await source.sha256() !== archive.sha256) {
    throw new Error(`extractAppArchive was given bytes that are not the archive ${archive.sha256}.`);
  }
  const entries = await readCheckedEntries(source, limits);
  const { rootPrefix } = resolveLayout(entries);
  const createdPaths: string[] = [];
  try {
    await makeDirectory(targetDir, createdPaths);
    for (const entry of entries) {
      if (isMacOsNoise(entry.name) || isDirectory(entry)) continue;
      await writeEntryFile(source, entry, path.join(targetDir, entry.name.slice(rootPrefix.length)), createdPaths);
    }
  } catch (error) {
    for (const created of createdPaths.reverse()) await rm(created, { recursive: true, force: true });
    throw error;
  }
}

function asSource(bytes: Buffer | ArchiveSource): ArchiveSource {
  return Buffer.isBuffer(bytes) ? bufferSource(bytes) : bytes;
}
