import { Transform } from 'node:stream';
import type { StoredArray } from './checkpoint.model.js';

/** safetensors' dtype for each numpy dtype it can hold, with its item size. */
const SAFETENSORS_DTYPES: Record<string, { dtype: string; itemBytes: number }> = {
  bool: { dtype: 'BOOL', itemBytes: 1 },
  int8: { dtype: 'I8', itemBytes: 1 }, uint8: { dtype: 'U8', itemBytes: 1 },
  int16: { dtype: 'I16', itemBytes: 2 }, uint16: { dtype: 'U16', itemBytes: 2 },
  int32: { dtype: 'I32', itemBytes: 4 }, uint32: { dtype: 'U32', itemBytes: 4 },
  int64: { dtype: 'I64', itemBytes: 8 }, uint64: { dtype: 'U64', itemBytes: 8 },
  float16: { dtype: 'F16', itemBytes: 2 }, float32: { dtype: 'F32', itemBytes: 4 }, float64: { dtype: 'F64', itemBytes: 8 },
};
const METADATA_KEY = '__metadata__';

/** Why a checkpoint cannot be given as safetensors (the npz download still works). */
export class SafetensorsRefusal extends Error {}

/** What it takes to stream a checkpoint as safetensors: its header, then these byte ranges of the .npz, in order. */
export interface SafetensorsPlan {
  header: Buffer;
  /** Ranges of the .npz holding the arrays' raw bytes, ascending, `end` exclusive. */
  ranges: Array<{ start: number; end: number }>;
  sizeBytes: number;
}

/**
 * Plans the safetensors form of a checkpoint: safetensors holds little-endian, C-ordered arrays
 * back to back after a JSON header, and the .npz the shim writes holds exactly those bytes (after
 * each member's headers), so the conversion copies ranges and reads nothing into memory.
 */
export function planSafetensors(arrays: readonly StoredArray[], metadata: Record<string, string>): SafetensorsPlan {
  const header: Record<string, unknown> = { [METADATA_KEY]: metadata };
  const ranges: SafetensorsPlan['ranges'] = [];
  let offset = 0;
  for (const array of [...arrays].sort((a, b) => a.dataOffset - b.dataOffset)) {
    const target = SAFETENSORS_DTYPES[array.dtype];
    if (!target) {
      throw new SafetensorsRefusal(`safetensors cannot hold array "${array.name}" of dtype ${array.dtype} ` +
        `(it holds ${Object.keys(SAFETENSORS_DTYPES).join(', ')}); download it as npz`);
    }
    if (array.fortranOrder) throw new SafetensorsRefusal(`array "${array.name}" is stored in Fortran order; download it as npz`);
    if (array.name === METADATA_KEY) throw new SafetensorsRefusal(`safetensors reserves the name ${METADATA_KEY}; download it as npz`);
    const expected = array.shape.reduce((product, size) => product * size, target.itemBytes);
    if (expected !== array.byteLength) throw new SafetensorsRefusal(`array "${array.name}" does not hold as many bytes as its shape says`);
    header[array.name] = { dtype: target.dtype, shape: array.shape, data_offsets: [offset, offset + array.byteLength] };
    offset += array.byteLength;
    if (array.byteLength > 0) ranges.push({ start: array.dataOffset, end: array.dataOffset + array.byteLength });
  }
  // The JSON is padded with spaces to a multiple of 8 bytes, as safetensors writes it, so the data starts aligned.
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, ' ')]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return { header: Buffer.concat([length, json]), ranges, sizeBytes: 8 + json.length + offset };
}

/**
 * Keeps, of a stream of the file's bytes from `ranges[0].start` to the last range's end, only the
 * bytes inside `ranges`: one read of the stored file, whatever the number of arrays.
 */
export function keepRanges(ranges: SafetensorsPlan['ranges']): Transform {
  const first = ranges[0]?.start ?? 0;
  let position = first;
  let index = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      const chunkStart = position;
      position += chunk.length;
      while (index < ranges.length) {
        const range = ranges[index]!;
        if (range.start >= position) break;
        const from = Math.max(range.start, chunkStart) - chunkStart;
        const to = Math.min(range.end, position) - chunkStart;
        if (to > from) this.push(chunk.subarray(from, to));
        if (range.end > position) break;
        index += 1;
      }
      done();
    },
  });
}
