import { chmod, mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { pipeline as pipeStreams, Readable } from 'node:stream';
import { crc32, createInflateRaw } from 'node:zlib';
import { GraphQLError } from 'graphql';
import { parse, TomlError, type TomlTableWithoutBigInt as TomlTable } from 'smol-toml';
import { ErrorCode } from '../../errors.js';
import { bufferSource, readChunks, type ArchiveSource } from './archive-source.js';

export type ArchiveRejection =
  | 'NOT_A_ZIP' | 'TOO_LARGE' | 'TOO_MANY_ENTRIES' | 'ZIP_BOMB' | 'PATH_TRAVERSAL' | 'ABSOLUTE_PATH'
  | 'SYMLINK' | 'DUPLICATE_ENTRY' | 'ENCRYPTED' | 'MISSING_FILE' | 'BAD_PYPROJECT' | 'BAD_COMPONENT';

export interface ArchiveLimits {
  maxBytes: number;
  maxEntries: number;
  maxUncompressedBytes: number;
  /** Applies to entries over 1 MiB uncompressed. */
  maxCompressionRatio: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_ARCHIVE_LIMITS: Omit<ArchiveLimits, 'maxBytes'> = {
  maxEntries: 1000,
  maxUncompressedBytes: 100 * MiB,
  maxCompressionRatio: 200,
};

export type RunConfigValue = string | number | boolean;

export interface AppArchive {
  /** Hex SHA-256 of the whole archive. */
  sha256: string;
  sizeBytes: number;
  /** '' when pyproject.toml is at the archive root, else the one top-level folder, e.g. 'myapp/'. */
  rootPrefix: string;
  /** Files (no folders) relative to the app root, sorted. */
  files: string[];
  name: string;
  version: string;
  publisher: string | null;
  components: { serverapp: string; clientapp: string };
  /** [tool.flwr.app.config] with nested tables flattened into dotted keys, as Flower does. */
  runConfigDefaults: Record<string, RunConfigValue>;
}

export function invalidArchive(reason: ArchiveRejection, message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.INVALID_APP_ARCHIVE, reason } });
}

/** An archive over the upload limit; `size` may be only what was received before giving up. */
export function archiveTooLarge(size: number, maxBytes: number): GraphQLError {
  return invalidArchive('TOO_LARGE', `The archive is ${size > maxBytes ? overLimit(size, maxBytes) : `larger than the ${formatSize(maxBytes)} limit`}.`);
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
  const metadata = parsePyproject(await verifyEntriesAndReadPyproject(source, entries, layout.pyproject));
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

// --- ZIP structure -------------------------------------------------------------------------------

const LOCAL_HEADER_SIGNATURE = 0x04034b50;
const LOCAL_HEADER_SIZE = 30;
const CENTRAL_HEADER_SIGNATURE = 0x02014b50;
const CENTRAL_HEADER_SIZE = 46;
const EOCD_SIGNATURE = 0x06054b50;
const EOCD_SIZE = 22;
const MAX_EOCD_COMMENT = 0xffff;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const ZIP64_EOCD_SIZE = 56;
const ZIP64_EXTRA_FIELD_ID = 0x0001;
const UINT16_MAX = 0xffff;
const UINT32_MAX = 0xffffffff;

const METHOD_STORED = 0;
const METHOD_DEFLATED = 8;
const FLAG_ENCRYPTED = 0x0001;
const FLAG_STRONG_ENCRYPTION = 0x0040;
const FLAG_UTF8_NAME = 0x0800;
const HOST_UNIX = 3;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

interface ZipEntry {
  name: string;
  flags: number;
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  /** High byte of 'version made by': says how to read externalAttributes. */
  hostSystem: number;
  externalAttributes: number;
  localHeaderOffset: number;
}

interface CentralDirectoryLocation {
  offset: number;
  size: number;
  entryCount: number;
  /** Where the end record starts: the directory must end before it. */
  limit: number;
}

/** Everything that can be judged from the central directory alone, before inflating a byte. */
async function readCheckedEntries(source: ArchiveSource, limits: ArchiveLimits): Promise<ZipEntry[]> {
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

async function locateCentralDirectory(source: ArchiveSource): Promise<CentralDirectoryLocation> {
  const eocdOffset = await findEndOfCentralDirectory(source);
  const eocd = await source.read(eocdOffset, EOCD_SIZE);
  checkSingleDisk(eocd.readUInt16LE(4), eocd.readUInt16LE(6), eocd.readUInt16LE(8), eocd.readUInt16LE(10));
  const location = {
    entryCount: eocd.readUInt16LE(10),
    size: eocd.readUInt32LE(12),
    offset: eocd.readUInt32LE(16),
    limit: eocdOffset,
  };
  const isZip64 = location.entryCount === UINT16_MAX || location.size === UINT32_MAX || location.offset === UINT32_MAX;
  const directory = isZip64 ? await readZip64EndOfCentralDirectory(source, eocdOffset) : location;
  if (directory.offset + directory.size > directory.limit) {
    throw notAZip(`The central directory (${directory.size} bytes at offset ${directory.offset}) lies outside the archive's ${source.size} bytes: the file is truncated or damaged.`);
  }
  return directory;
}

/** The end record sits in the last 22 bytes plus at most a 65,535-byte comment. */
async function findEndOfCentralDirectory(source: ArchiveSource): Promise<number> {
  const tailStart = Math.max(0, source.size - EOCD_SIZE - MAX_EOCD_COMMENT);
  const tail = await source.read(tailStart, source.size - tailStart);
  for (let offset = tail.length - EOCD_SIZE; offset >= 0; offset--) {
    if (tail.readUInt32LE(offset) === EOCD_SIGNATURE && offset + EOCD_SIZE + tail.readUInt16LE(offset + 20) === tail.length) {
      return tailStart + offset;
    }
  }
  throw notAZip(source.size === 0
    ? 'The file is empty.'
    : 'This is not a ZIP archive: it has no ZIP end-of-central-directory record (it may be another kind of file, or a truncated download).');
}

async function readZip64EndOfCentralDirectory(source: ArchiveSource, eocdOffset: number): Promise<CentralDirectoryLocation> {
  const locatorOffset = eocdOffset - ZIP64_LOCATOR_SIZE;
  const locator = locatorOffset < 0 ? undefined : await source.read(locatorOffset, ZIP64_LOCATOR_SIZE);
  if (!locator || locator.readUInt32LE(0) !== ZIP64_LOCATOR_SIGNATURE) {
    throw notAZip('The end record announces a ZIP64 archive, but the ZIP64 locator is missing.');
  }
  if (locator.readUInt32LE(4) !== 0 || locator.readUInt32LE(16) !== 1) throw spansSeveralDisks();
  const recordOffset = readUInt64(locator, 8);
  const record = recordOffset + ZIP64_EOCD_SIZE > locatorOffset ? undefined : await source.read(recordOffset, ZIP64_EOCD_SIZE);
  if (!record || record.readUInt32LE(0) !== ZIP64_EOCD_SIGNATURE) {
    throw notAZip('The ZIP64 end-of-central-directory record is missing or outside the archive.');
  }
  checkSingleDisk(record.readUInt32LE(16), record.readUInt32LE(20), readUInt64(record, 24), readUInt64(record, 32));
  return {
    entryCount: readUInt64(record, 32),
    size: readUInt64(record, 40),
    offset: readUInt64(record, 48),
    limit: recordOffset,
  };
}

function checkSingleDisk(disk: number, directoryDisk: number, entriesOnDisk: number, totalEntries: number): void {
  if (disk !== 0 || directoryDisk !== 0 || entriesOnDisk !== totalEntries) throw spansSeveralDisks();
}

function spansSeveralDisks(): GraphQLError {
  return notAZip('The archive is split over several disks or parts; upload it as one ZIP file.');
}

/** `bytes` is the whole central directory, as located. */
function readCentralDirectory(bytes: Buffer, directory: CentralDirectoryLocation): ZipEntry[] {
  const entries: ZipEntry[] = [];
  let cursor = 0;
  for (let index = 0; index < directory.entryCount; index++) {
    const damaged = () => notAZip(`Central directory entry ${index + 1} of ${directory.entryCount} is missing or damaged.`);
    if (cursor + CENTRAL_HEADER_SIZE > bytes.length || bytes.readUInt32LE(cursor) !== CENTRAL_HEADER_SIGNATURE) throw damaged();
    const nameStart = cursor + CENTRAL_HEADER_SIZE;
    const extraStart = nameStart + bytes.readUInt16LE(cursor + 28);
    const extraEnd = extraStart + bytes.readUInt16LE(cursor + 30);
    const next = extraEnd + bytes.readUInt16LE(cursor + 32);
    if (next > bytes.length) throw damaged();
    const flags = bytes.readUInt16LE(cursor + 8);
    const entry: ZipEntry = {
      name: decodeName(bytes.subarray(nameStart, extraStart), flags),
      flags,
      method: bytes.readUInt16LE(cursor + 10),
      crc32: bytes.readUInt32LE(cursor + 16),
      compressedSize: bytes.readUInt32LE(cursor + 20),
      uncompressedSize: bytes.readUInt32LE(cursor + 24),
      hostSystem: bytes.readUInt8(cursor + 5),
      externalAttributes: bytes.readUInt32LE(cursor + 38),
      localHeaderOffset: bytes.readUInt32LE(cursor + 42),
    };
    applyZip64ExtraField(entry, bytes.subarray(extraStart, extraEnd));
    entries.push(entry);
    cursor = next;
  }
  if (cursor !== bytes.length) {
    throw notAZip(`The central directory is ${directory.size} bytes, but the ${directory.entryCount} entries its end record announces take ${cursor}.`);
  }
  return entries;
}

/** ZIP64 stores, in this order, the 64-bit value of each 32-bit field that was set to 0xFFFFFFFF. */
function applyZip64ExtraField(entry: ZipEntry, extra: Buffer): void {
  for (let offset = 0; offset + 4 <= extra.length; offset += 4 + extra.readUInt16LE(offset + 2)) {
    if (extra.readUInt16LE(offset) !== ZIP64_EXTRA_FIELD_ID) continue;
    const field = extra.subarray(offset + 4, offset + 4 + extra.readUInt16LE(offset + 2));
    let position = 0;
    const nextValue = () => {
      if (position + 8 > field.length) throw notAZip(`The ZIP64 extra field of ${quoted(entry.name)} is too short.`);
      position += 8;
      return readUInt64(field, position - 8);
    };
    if (entry.uncompressedSize === UINT32_MAX) entry.uncompressedSize = nextValue();
    if (entry.compressedSize === UINT32_MAX) entry.compressedSize = nextValue();
    if (entry.localHeaderOffset === UINT32_MAX) entry.localHeaderOffset = nextValue();
    return;
  }
}

function decodeName(raw: Buffer, flags: number): string {
  if (!(flags & FLAG_UTF8_NAME)) return raw.toString('latin1');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw notAZip(`An entry name is marked UTF-8 but is not valid UTF-8: ${quoted(raw.toString('latin1'))}.`);
  }
}

// --- Entry checks --------------------------------------------------------------------------------

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

// --- Inflation -----------------------------------------------------------------------------------

/** Archive data is read, and inflated, this much at a time. */
const CHUNK_BYTES = 64 * 1024;

/** Inflates every entry once, so lying sizes and damaged data are refused now rather than at run time. */
async function verifyEntriesAndReadPyproject(source: ArchiveSource, entries: ZipEntry[], pyproject: ZipEntry): Promise<Buffer> {
  const pyprojectChunks: Buffer[] = [];
  for (const entry of entries) {
    for await (const chunk of verifiedChunks(source, entry)) {
      if (entry === pyproject) pyprojectChunks.push(Buffer.from(chunk));
    }
  }
  return Buffer.concat(pyprojectChunks);
}

/**
 * The entry's content, refused as soon as it outgrows its declared size, and at the end unless size
 * and CRC-32 match. A chunk may be overwritten by the next: use it before asking for another.
 */
async function* verifiedChunks(source: ArchiveSource, entry: ZipEntry): AsyncGenerator<Buffer> {
  let produced = 0;
  let crc = 0;
  for await (const chunk of inflatedChunks(source, entry, await locateEntryData(source, entry))) {
    produced += chunk.length;
    if (produced > entry.uncompressedSize) {
      throw invalidArchive('ZIP_BOMB', `${quoted(entry.name)} inflates to more than the ${formatSize(entry.uncompressedSize)} its header declares.`);
    }
    crc = crc32(chunk, crc);
    yield chunk;
  }
  if (produced < entry.uncompressedSize) {
    throw notAZip(`${quoted(entry.name)} inflates to ${formatSize(produced)}, less than the ${formatSize(entry.uncompressedSize)} its header declares: the archive is damaged.`);
  }
  if (crc !== entry.crc32) {
    throw notAZip(`${quoted(entry.name)} fails its CRC-32 check (expected ${hex32(entry.crc32)}, got ${hex32(crc)}): the archive is damaged.`);
  }
}

async function* inflatedChunks(source: ArchiveSource, entry: ZipEntry, dataStart: number): AsyncGenerator<Buffer> {
  if (entry.method === METHOD_STORED) {
    // All in one buffer: a 20 MB upload otherwise leaves 20 MB of garbage within milliseconds.
    yield* readChunks(source, dataStart, entry.compressedSize, CHUNK_BYTES, Buffer.allocUnsafe(Math.min(CHUNK_BYTES, entry.compressedSize)));
    return;
  }
  // Some writers store empty files as "deflated" with no data at all, which zlib calls truncated.
  if (entry.compressedSize === 0) return;
  // Fresh buffers here: zlib holds on to its input until it has inflated it. Errors reach the loop
  // below through the inflater; stopping early (a bomb) destroys it, and with it the reads feeding it.
  const compressed = Readable.from(readChunks(source, dataStart, entry.compressedSize, CHUNK_BYTES));
  const inflater = pipeStreams(compressed, createInflateRaw({ chunkSize: CHUNK_BYTES }), () => {});
  try {
    yield* inflater;
  } catch (error) {
    if (!isZlibError(error)) throw error;
    throw notAZip(`${quoted(entry.name)} is not valid deflate data (${error.message}).`);
  }
}

function isZlibError(error: unknown): error is Error {
  return error instanceof Error && /^Z_/.test(String((error as NodeJS.ErrnoException).code));
}

/** Where the entry's data starts, after its local header. */
async function locateEntryData(source: ArchiveSource, entry: ZipEntry): Promise<number> {
  const headerOffset = entry.localHeaderOffset;
  const header = headerOffset + LOCAL_HEADER_SIZE > source.size ? undefined : await source.read(headerOffset, LOCAL_HEADER_SIZE);
  if (!header || header.readUInt32LE(0) !== LOCAL_HEADER_SIGNATURE) {
    throw notAZip(`The local header of ${quoted(entry.name)} is missing (the central directory points at offset ${headerOffset}).`);
  }
  const nameStart = headerOffset + LOCAL_HEADER_SIZE;
  const nameEnd = nameStart + header.readUInt16LE(26);
  const dataStart = nameEnd + header.readUInt16LE(28);
  if (dataStart + entry.compressedSize > source.size) {
    throw notAZip(`The data of ${quoted(entry.name)} runs past the end of the archive: the file is truncated.`);
  }
  // Other unzip tools read the local name: both names must agree for the checks here to hold there.
  const localName = decodeName(await source.read(nameStart, nameEnd - nameStart), entry.flags);
  if (localName !== entry.name) {
    throw notAZip(`The central directory names an entry ${quoted(entry.name)}, but its local header names it ${quoted(localName)}.`);
  }
  return dataStart;
}

// --- Extraction ----------------------------------------------------------------------------------

const FILE_MODE = 0o644;

async function makeDirectory(directory: string, createdPaths: string[]): Promise<void> {
  const firstCreated = await mkdir(directory, { recursive: true });
  if (firstCreated) createdPaths.push(firstCreated);
}

async function writeEntryFile(source: ArchiveSource, entry: ZipEntry, filePath: string, createdPaths: string[]): Promise<void> {
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

// --- Layout --------------------------------------------------------------------------------------

interface AppLayout {
  rootPrefix: string;
  files: string[];
  pyproject: ZipEntry;
}

function resolveLayout(entries: ZipEntry[]): AppLayout {
  const appEntries = entries.filter((entry) => !isMacOsNoise(entry.name));
  const rootPrefix = findAppRoot(appEntries);
  const files = appEntries.filter((entry) => !isDirectory(entry)).map((entry) => entry.name.slice(rootPrefix.length)).sort();
  for (const required of ['server_app.py', 'client_app.py']) {
    if (!files.some((file) => path.posix.basename(file) === required)) {
      throw invalidArchive('MISSING_FILE', `There is no ${required} anywhere under ${describeRoot(rootPrefix)}; ` +
        `Flower apps keep it in their package folder (e.g. myapp/${required}).`);
    }
  }
  const pyproject = appEntries.find((entry) => entry.name === `${rootPrefix}pyproject.toml`)!;
  return { rootPrefix, files, pyproject };
}

/** The archive root, or the single top-level folder everything was zipped in. */
function findAppRoot(appEntries: ZipEntry[]): string {
  const filePaths = new Set(appEntries.filter((entry) => !isDirectory(entry)).map((entry) => entry.name));
  if (filePaths.has('pyproject.toml')) return '';
  const topLevel = new Set(appEntries.map((entry) => entry.name.slice(0, entry.name.indexOf('/') + 1) || entry.name));
  const [onlyFolder] = topLevel;
  if (topLevel.size === 1 && onlyFolder.endsWith('/')) {
    if (filePaths.has(`${onlyFolder}pyproject.toml`)) return onlyFolder;
    throw invalidArchive('MISSING_FILE', `There is no pyproject.toml at the archive root or in its top-level folder ${onlyFolder}.`);
  }
  throw invalidArchive('MISSING_FILE', appEntries.length === 0
    ? 'The archive is empty: a Flower App needs at least pyproject.toml, server_app.py and client_app.py.'
    : 'There is no pyproject.toml at the archive root. Zip the app folder\'s contents, or the app folder alone as the only top-level folder.');
}

function describeRoot(rootPrefix: string): string {
  return rootPrefix === '' ? 'the archive root' : `the app folder ${rootPrefix}`;
}

/** Finder adds these when zipping; they are checked like any entry but are not part of the app. */
function isMacOsNoise(name: string): boolean {
  return name.startsWith('__MACOSX/') || path.posix.basename(stripTrailingSlash(name)) === '.DS_Store';
}

function isDirectory(entry: ZipEntry): boolean {
  return entry.name.endsWith('/');
}

// --- pyproject.toml ------------------------------------------------------------------------------

const MAX_PYPROJECT_BYTES = MiB;
const COMPONENT_PATTERN = /^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$/;
const COMPONENTS_TABLE = 'tool.flwr.app.components';
const CONFIG_TABLE = 'tool.flwr.app.config';
/** Far deeper than any real run config, far shallower than the call stack (a.b.c... = 1 nests at will). */
const MAX_CONFIG_DEPTH = 64;

type AppMetadata = Pick<AppArchive, 'name' | 'version' | 'publisher' | 'components' | 'runConfigDefaults'>;
type ComponentRole = keyof AppArchive['components'];

function checkPyprojectSize(pyproject: ZipEntry): void {
  if (pyproject.uncompressedSize > MAX_PYPROJECT_BYTES) {
    throw badPyproject(`pyproject.toml is ${overLimit(pyproject.uncompressedSize, MAX_PYPROJECT_BYTES)}.`);
  }
}

function parsePyproject(raw: Buffer): AppMetadata {
  const document = parseToml(decodePyproject(raw));
  const project = tableAt(document, 'project');
  const app = tableAt(document, 'tool.flwr.app');
  const components = tableAt(document, COMPONENTS_TABLE);
  const config = tableAt(document, CONFIG_TABLE);
  return {
    name: requiredString(project, 'project', 'name', 'myapp'),
    version: requiredString(project, 'project', 'version', '1.0.0'),
    publisher: optionalString(app, 'tool.flwr.app', 'publisher'),
    components: {
      serverapp: componentReference(components, 'serverapp'),
      clientapp: componentReference(components, 'clientapp'),
    },
    runConfigDefaults: Object.fromEntries(flattenRunConfig(config ?? {})),
  };
}

function decodePyproject(raw: Buffer): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
  } catch {
    throw badPyproject('pyproject.toml is not valid UTF-8 text.');
  }
  // smol-toml skips a byte order mark, but Flower's TOML reader (tomli) fails on it.
  if (text.startsWith('\uFEFF')) throw badPyproject('pyproject.toml starts with a byte order mark, which Flower cannot read: save it as UTF-8 without BOM.');
  return text;
}

function parseToml(text: string): TomlTable {
  try {
    // Integers stay numbers; one beyond Number.MAX_SAFE_INTEGER is a TomlError rather than a bigint.
    return parse(text, { integersAsBigInt: false });
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    const problem = error.message.split('\n')[0].replace(/^Invalid TOML document: /, '').replace(/\.$/, '');
    throw badPyproject(`pyproject.toml line ${error.line}, column ${error.column}: ${problem}.`);
  }
}

function tableAt(document: TomlTable, dottedPath: string): TomlTable | undefined {
  let table = document;
  const keys = dottedPath.split('.');
  for (const [index, key] of keys.entries()) {
    const value = table[key];
    if (value === undefined) return undefined;
    if (!isTable(value)) throw badPyproject(`In pyproject.toml, ${keys.slice(0, index + 1).join('.')} must be a table.`);
    table = value;
  }
  return table;
}

function requiredString(table: TomlTable | undefined, tableName: string, key: string, example: string): string {
  const value = table?.[key];
  if (typeof value !== 'string' || value.trim() === '') {
    throw badPyproject(`pyproject.toml needs a non-empty string ${key} in [${tableName}], such as ${key} = "${example}"` +
      `${value === undefined ? '' : `; it has ${describeTomlValue(value)}`}.`);
  }
  return value;
}

function optionalString(table: TomlTable | undefined, tableName: string, key: string): string | null {
  const value = table?.[key];
  if (value === undefined) return null;
  if (typeof value !== 'string') throw badPyproject(`In pyproject.toml, [${tableName}] ${key} must be a string; it is ${describeTomlValue(value)}.`);
  return value;
}

function componentReference(components: TomlTable | undefined, role: ComponentRole): string {
  const reference = requiredString(components, COMPONENTS_TABLE, role, exampleComponent(role));
  if (!COMPONENT_PATTERN.test(reference)) {
    throw invalidArchive('BAD_COMPONENT', `[${COMPONENTS_TABLE}] ${role} = ${JSON.stringify(reference)} is not of the form ` +
      `module.path:attribute, such as "${exampleComponent(role)}".`);
  }
  return reference;
}

function exampleComponent(role: ComponentRole): string {
  return role === 'serverapp' ? 'myapp.server_app:app' : 'myapp.client_app:app';
}

function checkComponentModules(components: AppArchive['components'], layout: AppLayout): void {
  const files = new Set(layout.files);
  for (const [role, reference] of Object.entries(components)) {
    const moduleName = reference.slice(0, reference.indexOf(':'));
    const modulePath = moduleName.replaceAll('.', '/');
    if (!files.has(`${modulePath}.py`) && !files.has(`${modulePath}/__init__.py`)) {
      throw invalidArchive('BAD_COMPONENT', `[${COMPONENTS_TABLE}] ${role} = ${JSON.stringify(reference)} points at module ${moduleName}, ` +
        `but there is no ${modulePath}.py or ${modulePath}/__init__.py under ${describeRoot(layout.rootPrefix)}.`);
    }
  }
}

/** Flower flattens nested tables into dotted keys: [tool.flwr.app.config.train] lr = 0.1 is 'train.lr'. */
function flattenRunConfig(table: TomlTable, prefix = '', depth = 1, into = new Map<string, RunConfigValue>()): Map<string, RunConfigValue> {
  for (const [key, value] of Object.entries(table)) {
    const dottedKey = `${prefix}${key}`;
    if (isTable(value)) {
      if (depth === MAX_CONFIG_DEPTH) throw badPyproject(`[${CONFIG_TABLE}] nests tables more than ${MAX_CONFIG_DEPTH} levels deep, at ${dottedKey}.`);
      flattenRunConfig(value, `${dottedKey}.`, depth + 1, into);
    } else if (!isRunConfigValue(value)) {
      throw badPyproject(`[${CONFIG_TABLE}] ${dottedKey} is ${describeTomlValue(value)}; run config values must be strings, finite numbers or booleans.`);
    } else if (into.has(dottedKey)) {
      throw badPyproject(`[${CONFIG_TABLE}] defines ${dottedKey} twice (once as a quoted key, once through nested tables).`);
    } else {
      into.set(dottedKey, value);
    }
  }
  return into;
}

function isTable(value: unknown): value is TomlTable {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function isRunConfigValue(value: unknown): value is RunConfigValue {
  return typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value));
}

function describeTomlValue(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date or time';
  if (typeof value === 'number') return Number.isFinite(value) ? `the number ${value}` : `the non-finite number ${value}`;
  if (isTable(value)) return 'a table';
  return `${JSON.stringify(value)}`;
}

function badPyproject(message: string): GraphQLError {
  return invalidArchive('BAD_PYPROJECT', message);
}

// --- Small helpers -------------------------------------------------------------------------------

function notAZip(message: string): GraphQLError {
  return invalidArchive('NOT_A_ZIP', message);
}

function readUInt64(bytes: Buffer, offset: number): number {
  // Values past 2^53 lose precision, but they are far past any buffer and fail the bounds checks anyway.
  return Number(bytes.readBigUInt64LE(offset));
}

function stripTrailingSlash(name: string): string {
  return name.endsWith('/') ? name.slice(0, -1) : name;
}

function quoted(name: string): string {
  return JSON.stringify(name);
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

/** '400 MB, more than the 100 MB limit', in exact bytes when rounding would make both look equal. */
function overLimit(size: number, limit: number): string {
  const [formattedSize, formattedLimit] = [formatSize(size), formatSize(limit)];
  return formattedSize === formattedLimit
    ? `${size} bytes, more than the ${limit}-byte limit`
    : `${formattedSize}, more than the ${formattedLimit} limit`;
}

function formatSize(bytes: number): string {
  const oneDecimal = (value: number) => Math.round(value * 10) / 10;
  if (bytes < 1024) return `${bytes} byte${bytes === 1 ? '' : 's'}`;
  if (bytes < MiB) return `${oneDecimal(bytes / 1024)} KB`;
  return `${oneDecimal(bytes / MiB)} MB`;
}

function asSource(bytes: Buffer | ArchiveSource): ArchiveSource {
  return Buffer.isBuffer(bytes) ? bufferSource(bytes) : bytes;
}
