import { pipeline as pipeStreams, Readable } from 'node:stream';
import { crc32, createInflateRaw } from 'node:zlib';
import { formatSize, hex32, invalidArchive, notAZip, quoted } from './errors.js';
import { readChunks, type ArchiveSource } from './source.js';

/**
 * Reading a ZIP file at offsets: its central directory, and each entry's data inflated and checked
 * (declared size, CRC-32) chunk by chunk. Nothing here holds a whole archive or a whole entry.
 */

export const LOCAL_HEADER_SIGNATURE = 0x04034b50;
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

export const METHOD_STORED = 0;
export const METHOD_DEFLATED = 8;
export const FLAG_ENCRYPTED = 0x0001;
export const FLAG_STRONG_ENCRYPTION = 0x0040;
const FLAG_UTF8_NAME = 0x0800;
export const HOST_UNIX = 3;
export const S_IFMT = 0o170000;
export const S_IFLNK = 0o120000;

export interface ZipEntry {
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

export interface CentralDirectoryLocation {
  offset: number;
  size: number;
  entryCount: number;
  /** Where the end record starts: the directory must end before it. */
  limit: number;
}

/** Finds the central directory from the end record (ZIP64 too); refuses archives spread over several disks. */
export async function locateCentralDirectory(source: ArchiveSource): Promise<CentralDirectoryLocation> {
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

function spansSeveralDisks() {
  return notAZip('The archive is split over several disks or parts; upload it as one ZIP file.');
}

/** `bytes` is the whole central directory, as located. */
export function readCentralDirectory(bytes: Buffer, directory: CentralDirectoryLocation): ZipEntry[] {
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


/** Archive data is read, and inflated, this much at a time. */
const CHUNK_BYTES = 64 * 1024;

/**
 * Inflates every entry once, so lying sizes and damaged data are refused now rather than at run
 * time; returns the content of `wanted`.
 */
export async function verifyEntries(source: ArchiveSource, entries: ZipEntry[], wanted: ZipEntry): Promise<Buffer> {
  const wantedChunks: Buffer[] = [];
  for (const entry of entries) {
    for await (const chunk of verifiedChunks(source, entry)) {
      if (entry === wanted) wantedChunks.push(Buffer.from(chunk));
    }
  }
  return Buffer.concat(wantedChunks);
}

/**
 * The entry's content, refused as soon as it outgrows its declared size, and at the end unless size
 * and CRC-32 match. A chunk may be overwritten by the next: use it before asking for another.
 */
export async function* verifiedChunks(source: ArchiveSource, entry: ZipEntry): AsyncGenerator<Buffer> {
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

export function isDirectory(entry: ZipEntry): boolean {
  return entry.name.endsWith('/');
}

export function stripTrailingSlash(name: string): string {
  return name.endsWith('/') ? name.slice(0, -1) : name;
}

function readUInt64(bytes: Buffer, offset: number): number {
  // Values past 2^53 lose precision, but they are far past any buffer and fail the bounds checks anyway.
  return Number(bytes.readBigUInt64LE(offset));
}
