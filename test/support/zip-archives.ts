import { constants as zlibConstants, deflateRawSync, gzipSync } from 'node:zlib';

/** ZIP archives written byte by byte, for what no library writes: crafted bombs, ZIP64 records on small files. */

const MiB = 1024 * 1024;

export const crc32Of = (data: Buffer) => { const gzip = gzipSync(data); return gzip.readUInt32LE(gzip.length - 8); };

export interface RawEntry { name: string; data: Buffer; method?: 0 | 8; crc32?: number; uncompressedSize?: number }

/** A ZIP written byte by byte, for what no library writes: ZIP64 records on small files, a crafted bomb. */
export function handBuiltArchive(entries: RawEntry[], { zip64 = false } = {}): Buffer {
  const U32 = 0xffffffff;
  const records: Buffer[] = [];
  const centralHeaders: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name);
    const method = entry.method ?? 0;
    const crc = entry.crc32 ?? crc32Of(entry.data);
    const size = entry.uncompressedSize ?? entry.data.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(45, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(entry.data.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const extra = Buffer.alloc(zip64 ? 28 : 0);
    if (zip64) {
      extra.writeUInt16LE(0x0001, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(size), 4);
      extra.writeBigUInt64LE(BigInt(entry.data.length), 12);
      extra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 45, 4);
    central.writeUInt16LE(45, 6);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(zip64 ? U32 : entry.data.length, 20);
    central.writeUInt32LE(zip64 ? U32 : size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt16LE(extra.length, 30);
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38);
    central.writeUInt32LE(zip64 ? U32 : offset, 42);
    records.push(local, name, entry.data);
    centralHeaders.push(central, name, extra);
    offset += local.length + name.length + entry.data.length;
  }
  const directory = Buffer.concat(centralHeaders);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(zip64 ? 0xffff : entries.length, 8);
  end.writeUInt16LE(zip64 ? 0xffff : entries.length, 10);
  end.writeUInt32LE(zip64 ? U32 : directory.length, 12);
  end.writeUInt32LE(zip64 ? U32 : offset, 16);
  if (!zip64) return Buffer.concat([...records, directory, end]);
  const zip64End = Buffer.alloc(56);
  zip64End.writeUInt32LE(0x06064b50, 0);
  zip64End.writeBigUInt64LE(44n, 4);
  zip64End.writeUInt16LE(45, 12);
  zip64End.writeUInt16LE(45, 14);
  zip64End.writeBigUInt64LE(BigInt(entries.length), 24);
  zip64End.writeBigUInt64LE(BigInt(entries.length), 32);
  zip64End.writeBigUInt64LE(BigInt(directory.length), 40);
  zip64End.writeBigUInt64LE(BigInt(offset), 48);
  const locator = Buffer.alloc(20);
  locator.writeUInt32LE(0x07064b50, 0);
  locator.writeBigUInt64LE(BigInt(offset + directory.length), 8);
  locator.writeUInt32LE(1, 16);
  return Buffer.concat([...records, directory, zip64End, locator, end]);
}

export const storedEntries = (files: Record<string, string>): RawEntry[] =>
  Object.entries(files).map(([name, text]) => ({ name, data: Buffer.from(text) }));

/** Deflate data for `mebibytes` MiB of zeros: one compressed MiB repeated, each ending on a byte boundary. */
export function deflatedZeros(mebibytes: number): Buffer {
  const oneMebibyte = deflateRawSync(Buffer.alloc(MiB), { level: 9, finishFlush: zlibConstants.Z_SYNC_FLUSH });
  return Buffer.concat([...Array<Buffer>(mebibytes).fill(oneMebibyte), deflateRawSync(Buffer.alloc(0))]);
}
/** zlib.crc32(Buffer.alloc(400 * 1024 * 1024)), computed once with Python. */
export const CRC32_OF_400_MIB_OF_ZEROS = 0x432befad;

// --- Zip bombs that look like Flower Apps --------------------------------------------------------

/** The files a Flower App needs, so that a bomb gets past the layout checks to its data. */
const APP_FILES = {
  'pyproject.toml': '[project]\nname = "bomb"\nversion = "1.0.0"\n\n[tool.flwr.app.components]\n' +
    'serverapp = "bomb.server_app:app"\nclientapp = "bomb.client_app:app"\n',
  'bomb/__init__.py': '',
  'bomb/server_app.py': 'app = None\n',
  'bomb/client_app.py': 'app = None\n',
};

/** Under 1 MB, and its central directory honestly declares what it expands to: 400 MB of zeros. */
export function declaredZipBomb(): Buffer {
  return handBuiltArchive([...storedEntries(APP_FILES), {
    name: 'bomb/weights.bin', data: deflatedZeros(400), method: 8, crc32: CRC32_OF_400_MIB_OF_ZEROS, uncompressedSize: 400 * MiB,
  }]);
}

/**
 * Under 1 MB, and nothing in its central directory gives it away: `pieces` honest 1 MiB entries of
 * zeros (each too small for the compression-ratio rule, together within the 100 MB limit), then
 * an entry that declares 1 MiB but inflates to 400 MB. Only inflating finds the lie, after
 * inflating every piece before it.
 */
export function splitZipBomb(pieces = 95): Buffer {
  const oneMebibyte = deflatedZeros(1);
  const crc = crc32Of(Buffer.alloc(MiB));
  return handBuiltArchive([
    ...storedEntries(APP_FILES),
    ...Array.from({ length: pieces }, (_, i): RawEntry => ({
      name: `bomb/shards/${i}.bin`, data: oneMebibyte, method: 8, crc32: crc, uncompressedSize: MiB,
    })),
    { name: 'bomb/weights.bin', data: deflatedZeros(400), method: 8, crc32: crc, uncompressedSize: MiB },
  ]);
}
