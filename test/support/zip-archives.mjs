// ZIP archives written byte by byte, for what no library writes: crafted bombs, ZIP64 records on
// small files. Plain JavaScript (types from JSDoc), so that the tests and bench/ share it.
import { constants as zlibConstants, crc32, deflateRawSync } from 'node:zlib';

const MiB = 1024 * 1024;

/**
 * @typedef {object} RawEntry
 * @property {string} name
 * @property {Buffer} data what the archive holds: the bytes themselves (method 0) or raw deflate (8)
 * @property {0 | 8} [method] 0, stored, by default
 * @property {number} [crc32] declared CRC-32; the stored data's by default
 * @property {number} [uncompressedSize] declared size; the stored data's by default
 */

/**
 * @param {RawEntry[]} entries
 * @param {{ zip64?: boolean }} [options]
 * @returns {Buffer}
 */
export function handBuiltArchive(entries, { zip64 = false } = {}) {
  const U32 = 0xffffffff;
  /** @type {Buffer[]} */
  const records = [];
  /** @type {Buffer[]} */
  const centralHeaders = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name);
    const method = entry.method ?? 0;
    const crc = entry.crc32 ?? crc32(entry.data);
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

/**
 * @param {Record<string, string>} files path -> text
 * @returns {RawEntry[]}
 */
export const storedEntries = (files) => Object.entries(files).map(([name, text]) => ({ name, data: Buffer.from(text) }));

/**
 * Deflate data for `mebibytes` MiB of zeros: one compressed MiB repeated, each ending on a byte boundary.
 * @param {number} mebibytes
 * @returns {Buffer}
 */
export function deflatedZeros(mebibytes) {
  const oneMebibyte = deflateRawSync(Buffer.alloc(MiB), { level: 9, finishFlush: zlibConstants.Z_SYNC_FLUSH });
  return Buffer.concat([...Array(mebibytes).fill(oneMebibyte), deflateRawSync(Buffer.alloc(0))]);
}

/**
 * CRC-32 of `mebibytes` MiB of zeros, without holding them all.
 * @param {number} mebibytes
 * @returns {number}
 */
export function crc32OfZeros(mebibytes) {
  const zeros = Buffer.alloc(MiB);
  let crc = 0;
  for (let i = 0; i < mebibytes; i += 1) crc = crc32(zeros, crc);
  return crc;
}

// --- Zip bombs that look like Flower Apps --------------------------------------------------------

/** The files a Flower App needs, so that a bomb gets past the layout checks to its data. */
const APP_FILES = {
  'pyproject.toml': '[project]\nname = "bomb"\nversion = "1.0.0"\n\n[tool.flwr.app.components]\n' +
    'serverapp = "bomb.server_app:app"\nclientapp = "bomb.client_app:app"\n',
  'bomb/__init__.py': '',
  'bomb/server_app.py': 'app = None\n',
  'bomb/client_app.py': 'app = None\n',
};

/**
 * Under 1 MB, and its central directory honestly declares what it expands to: `mebibytes` MiB of zeros.
 * @param {number} [mebibytes]
 * @returns {Buffer}
 */
export function declaredZipBomb(mebibytes = 400) {
  return handBuiltArchive([...storedEntries(APP_FILES), {
    name: 'bomb/weights.bin', data: deflatedZeros(mebibytes), method: 8, crc32: crc32OfZeros(mebibytes), uncompressedSize: mebibytes * MiB,
  }]);
}

/**
 * Under 1 MB, and nothing in its central directory gives it away: `pieces` honest 1 MiB entries of
 * zeros (each too small for the compression-ratio rule, together within the 100 MB limit), then
 * an entry that declares 1 MiB but inflates to `mebibytes` MiB. Only inflating finds the lie,
 * after inflating every piece before it.
 * @param {{ pieces?: number, mebibytes?: number }} [options]
 * @returns {Buffer}
 */
export function splitZipBomb({ pieces = 95, mebibytes = 400 } = {}) {
  const oneMebibyte = deflatedZeros(1);
  const crc = crc32OfZeros(1);
  return handBuiltArchive([
    ...storedEntries(APP_FILES),
    ...Array.from({ length: pieces }, (_, i) => /** @type {RawEntry} */ ({
      name: `bomb/shards/${i}.bin`, data: oneMebibyte, method: 8, crc32: crc, uncompressedSize: MiB,
    })),
    { name: 'bomb/weights.bin', data: deflatedZeros(mebibytes), method: 8, crc32: crc, uncompressedSize: MiB },
  ]);
}
