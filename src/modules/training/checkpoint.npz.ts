import type { FileHandle } from 'node:fs/promises';
import yauzl from 'yauzl';

/** An array of a stored .npz: what users see (name, shape, dtype) and where its raw bytes lie in the file. */
export interface NpzArray {
  name: string;
  shape: number[];
  /** numpy's name of the dtype (float32), or the .npy descr when Pollen has no name for it. */
  dtype: string;
  /** The .npy descr ('<f4'): kind, byte order and item size. */
  descr: string;
  fortranOrder: boolean;
  /** Offset of the array's first data byte in the .npz, and its length. */
  dataOffset: number;
  byteLength: number;
}

/** Why a file is not an .npz Pollen can keep and serve. */
export class NpzError extends Error {}

const MAX_ARRAYS = 100_000;
const NPY_MAGIC = Buffer.from('\x93NUMPY', 'latin1');
const MAX_NPY_HEADER_BYTES = 64 * 1024;

/** numpy's little-endian (or byte-order-free) dtypes, by descr without the order mark. */
const NUMPY_DTYPES: Record<string, string> = {
  b1: 'bool', i1: 'int8', u1: 'uint8', i2: 'int16', u2: 'uint16', i4: 'int32', u4: 'uint32', i8: 'int64', u8: 'uint64',
  f2: 'float16', f4: 'float32', f8: 'float64', c8: 'complex64', c16: 'complex128',
};

/** The numpy name of a descr Pollen knows ('<f4' -> 'float32'); undefined for big-endian and exotic ones. */
export function numpyDtypeName(descr: string): string | undefined {
  const order = descr[0];
  if (order !== '<' && order !== '|') return undefined;
  return NUMPY_DTYPES[descr.slice(1)];
}

/**
 * The arrays of an uncompressed .npz (as numpy.savez and the ServerApp shim write it), in the
 * file's order, read from its central directory and each member's .npy header: nothing but
 * headers is read, whatever the size of the file.
 */
export async function readNpzLayout(file: FileHandle): Promise<NpzArray[]> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromFdPromise(file.fd, { lazyEntries: true, autoClose: false, strictFileNames: true, validateEntrySizes: true });
  } catch (error) {
    throw new NpzError(`not a ZIP archive (${(error as Error).message})`);
  }
  try {
    if (zip.entryCount > MAX_ARRAYS) throw new NpzError(`${zip.entryCount} members, more than ${MAX_ARRAYS}`);
    const arrays: NpzArray[] = [];
    for (let entry = await nextEntry(zip); entry; entry = await nextEntry(zip)) {
      if (!entry.fileName.endsWith('.npy')) throw new NpzError(`member ${entry.fileName} is not an .npy file`);
      if (entry.compressionMethod !== 0 || entry.isEncrypted()) throw new NpzError(`member ${entry.fileName} is compressed or encrypted`);
      const { fileDataStart } = await zip.readLocalFileHeaderPromise(entry, { minimal: true });
      const header = await readNpyHeader(file, fileDataStart, entry.uncompressedSize, entry.fileName);
      arrays.push({
        name: entry.fileName.slice(0, -'.npy'.length),
        ...header,
        dtype: numpyDtypeName(header.descr) ?? header.descr,
        dataOffset: fileDataStart + header.headerLength,
        byteLength: entry.uncompressedSize - header.headerLength,
      });
    }
    return arrays;
  } catch (error) {
    throw error instanceof NpzError ? error : new NpzError((error as Error).message);
  }
  // No zip.close(): it would close the file, which the caller still reads and closes.
}

function nextEntry(zip: yauzl.ZipFile): Promise<yauzl.Entry | undefined> {
  return new Promise((resolve, reject) => {
    const cleanup = () => zip.removeAllListeners('entry').removeAllListeners('end').removeAllListeners('error');
    zip.once('entry', (entry: yauzl.Entry) => (cleanup(), resolve(entry)));
    zip.once('end', () => (cleanup(), resolve(undefined)));
    zip.once('error', (error: Error) => (cleanup(), reject(error)));
    zip.readEntry();
  });
}

/** An .npy header (format 1.0 to 3.0): `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` after the magic. */
async function readNpyHeader(file: FileHandle, at: number, memberBytes: number, member: string) {
  const head = Buffer.alloc(Math.min(memberBytes, 12));
  await file.read(head, 0, head.length, at);
  if (head.length < 10 || !head.subarray(0, 6).equals(NPY_MAGIC)) throw new NpzError(`member ${member} is not an .npy array`);
  const major = head[6]!;
  const [lengthBytes, dictLength] = major === 1 ? [2, head.readUInt16LE(8)] : [4, head.length >= 12 ? head.readUInt32LE(8) : -1];
  const headerLength = 8 + lengthBytes + dictLength;
  if (major < 1 || major > 3 || dictLength < 0 || dictLength > MAX_NPY_HEADER_BYTES || headerLength > memberBytes) {
    throw new NpzError(`member ${member} has an unreadable .npy header`);
  }
  const dict = Buffer.alloc(dictLength);
  await file.read(dict, 0, dictLength, at + 8 + lengthBytes);
  const text = dict.toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(text)?.[1];
  const fortranOrder = /'fortran_order':\s*(True|False)/.exec(text)?.[1];
  const shape = /'shape':\s*\(([\d\s,]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortranOrder === undefined || shape === undefined) {
    throw new NpzError(`member ${member} holds an array numpy cannot describe simply (structured or object dtype)`);
  }
  return {
    descr,
    fortranOrder: fortranOrder === 'True',
    shape: shape.split(',').map((part) => part.trim()).filter(Boolean).map(Number),
    headerLength,
  };
}
