import {
  FLAG_ENCRYPTED, FLAG_STRONG_ENCRYPTION, HOST_UNIX, isDirectory, LOCAL_HEADER_SIGNATURE, locateCentralDirectory, METHOD_DEFLATED,
  METHOD_STORED, readCentralDirectory, S_IFLNK, S_IFMT, stripTrailingSlash, type ZipEntry,
} from './zip.js';
import { archiveTooLarge, formatSize, invalidArchive, MiB, notAZip, overLimit, quoted } from './errors.js';
import type { ArchiveSource } from './source.js';

export interface ArchiveLimits {
  maxBytes: number;
  maxEntries: number;
  maxUncompressedBytes: number;
  /** Applies to entries over 1 MiB uncompressed. */
  maxCompressionRatio: number;
}

export const DEFAULT_ARCHIVE_LIMITS: Omit<ArchiveLimits, 'maxBytes'> = {
  maxEntries: 1000,
  maxUncompressedBytes: 100 * MiB,
  maxCompressionRatio: 200,
};

/** Everything that can be judged from the central directory alone, before inflating a byte. */
export async function readCheckedEntries(source: ArchiveSource, limits: ArchiveLimits): Promise<ZipEntry[]> {
  if (source.size > limits.maxBytes) {
    throw archiveTooLarge(source.size, limits.maxBytes);
  }
  const directory = await locateCentralDirectory(source);
  if (directory.entryCount > limits.maxEntries) {
    throw invalidArchive('TOO_MANY_ENTRIES', `The archive has ${directory.entryCount} entries, more than the limit of ${limits.maxEntries}.`);
  }
  if (directory.entryCount > 0 && (await source.read(0, 4)).readUInt32LE(0) !== LOCAL_HEADER_SIGNATURE) {
    throw notAZip('The archive does not start with a ZIP file header (is something, such as a self-extractor, prepended to it?).');
  }
  const entries = readCentralDirectory(await source.read(directory.offset, directory.size), directory);
  for (const entry of entries) checkEntry(entry);
  checkNoDuplicates(entries);
  checkExpandedSize(entries, limits);
  return entries;
}

/** Small files compress well by nature (source code, empty files): only big ones can be bombs. */
const RATIO_CHECK_MIN_BYTES = MiB;

function checkEntry(entry: ZipEntry): void {
  checkEntryPath(entry.name);
  if (entry.hostSystem === HOST_UNIX && ((entry.externalAttributes >>> 16) & S_IFMT) === S_IFLNK) {
    throw invalidArchive('SYMLINK', `${quoted(entry.name)} is a symbolic link; an app archive may only hold regular files and folders.`);
  }
  if (entry.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) {
    throw invalidArchive('ENCRYPTED', `${quoted(entry.name)} is encrypted; create the archive without a password.`);
  }
  if (entry.method !== METHOD_STORED && entry.method !== METHOD_DEFLATED) {
    throw notAZip(`${quoted(entry.name)} uses compression method ${entry.method}; only stored (0) and deflate (8) are supported, as written by every standard zip tool.`);
  }
}

function checkEntryPath(name: string): void {
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) {
    throw invalidArchive('ABSOLUTE_PATH', `${quoted(name)} is an absolute path; entries must be relative to the archive root.`);
  }
  const traversal = (why: string) => invalidArchive('PATH_TRAVERSAL', `${quoted(name)} ${why}.`);
  if (name.includes('\\')) throw traversal('contains a backslash; folders must be separated by "/"');
  if (name.includes('\0')) throw traversal('contains a NUL byte');
  const segments = stripTrailingSlash(name).split('/');
  if (segments.includes('..')) throw traversal('contains a ".." segment that would leave the app folder');
  // 'a//b' and 'a/./b' are other spellings of 'a/b', which would defeat the duplicate check.
  if (segments.some((segment) => segment === '' || segment === '.')) throw traversal('contains an empty or "." path segment');
}

function checkNoDuplicates(entries: ZipEntry[]): void {
  const paths = new Set<string>();
  for (const entry of entries) {
    const entryPath = stripTrailingSlash(entry.name);
    if (paths.has(entryPath)) {
      throw invalidArchive('DUPLICATE_ENTRY', `The archive holds ${quoted(entryPath)} more than once; each path may appear only once.`);
    }
    paths.add(entryPath);
  }
  const filePaths = new Set(entries.filter((entry) => !isDirectory(entry)).map((entry) => entry.name));
  for (const entryPath of paths) {
    for (let slash = entryPath.indexOf('/'); slash !== -1; slash = entryPath.indexOf('/', slash + 1)) {
      const folder = entryPath.slice(0, slash);
      if (filePaths.has(folder)) {
        throw invalidArchive('DUPLICATE_ENTRY', `${quoted(folder)} is both a file and a folder in the archive.`);
      }
    }
  }
}

function checkExpandedSize(entries: ZipEntry[], limits: ArchiveLimits): void {
  const expandedSize = entries.reduce((sum, entry) => sum + entry.uncompressedSize, 0);
  if (expandedSize > limits.maxUncompressedBytes) {
    throw invalidArchive('ZIP_BOMB', `The archive expands to ${overLimit(expandedSize, limits.maxUncompressedBytes)}.`);
  }
  for (const entry of entries) {
    if (entry.uncompressedSize > RATIO_CHECK_MIN_BYTES && entry.uncompressedSize > entry.compressedSize * limits.maxCompressionRatio) {
      throw invalidArchive('ZIP_BOMB', `${quoted(entry.name)} expands from ${formatSize(entry.compressedSize)} to ${formatSize(entry.uncompressedSize)}, ` +
        `more than the ${limits.maxCompressionRatio}:1 compression ratio allowed for files over 1 MB.`);
    }
  }
}

