import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { StoredArray } from '../src/modules/training/checkpoint.model.js';
import { NpzError, readNpzLayout } from '../src/modules/training/checkpoint.npz.js';
import { keepRanges, planSafetensors, SafetensorsRefusal } from '../src/modules/training/checkpoint.safetensors.js';
import { REPO_ROOT } from './support/testkit.js';

const PYTHON = path.join(REPO_ROOT, '.venv/bin/python');
const dir = mkdtempSync(path.join(tmpdir(), 'pollen-formats-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs Python with numpy (and safetensors) in Pollen's venv; `script` gets `out` (a path) and prints JSON. */
async function python(script: string, out: string): Promise<unknown> {
  const { stdout } = await promisify(execFile)(PYTHON, ['-c', script, out]);
  return stdout.trim() ? JSON.parse(stdout) : undefined;
}

async function layoutOf(file: string): Promise<StoredArray[]> {
  const handle = await open(file);
  try {
    return await readNpzLayout(handle);
  } finally {
    await handle.close();
  }
}

/** Converts an .npz file to safetensors as the download route does: the header, then the kept ranges of one read. */
async function toSafetensors(npz: string, arrays: StoredArray[], out: string): Promise<void> {
  const plan = planSafetensors(arrays, { format: 'np' });
  const body = plan.ranges.length === 0
    ? Readable.from([])
    : createReadStream(npz, { start: plan.ranges[0]!.start, end: plan.ranges.at(-1)!.end - 1, highWaterMark: 7 }).pipe(keepRanges(plan.ranges));
  await pipeline(Readable.from((async function* () {
    yield plan.header;
    for await (const chunk of body) yield chunk;
  })()), createWriteStream(out));
}

// What the shim writes: uncompressed, one member per array, little-endian and C-ordered.
const SAVE_LIKE_THE_SHIM = `
import sys, zipfile, numpy as np
arrays = {
  "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
  "conv.bias": np.array([1.5, -2.0], dtype=np.float16),
  "steps": np.array(7, dtype=np.int64),
  "mask": np.array([True, False, True]),
  "empty": np.zeros((0, 3), dtype=np.uint8),
  "table": np.linspace(0, 1, 1000, dtype=np.float64).reshape(10, 100),
}
with zipfile.ZipFile(sys.argv[1], "w", compression=zipfile.ZIP_STORED, allowZip64=True) as npz:
  for name, values in arrays.items():
    with npz.open(zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as member:
      np.lib.format.write_array(member, values, allow_pickle=False)
`;

describe('checkpoint formats', () => {
  it('reads the arrays of an npz from its headers, in the file\'s order, with numpy\'s dtype names', async () => {
    const npz = path.join(dir, 'model.npz');
    await python(SAVE_LIKE_THE_SHIM, npz);
    expect((await layoutOf(npz)).map(({ name, shape, dtype }) => ({ name, shape, dtype }))).toEqual([
      { name: 'conv.weight', shape: [2, 3, 4], dtype: 'float32' },
      { name: 'conv.bias', shape: [2], dtype: 'float16' },
      { name: 'steps', shape: [], dtype: 'int64' },
      { name: 'mask', shape: [3], dtype: 'bool' },
      { name: 'empty', shape: [0, 3], dtype: 'uint8' },
      { name: 'table', shape: [10, 100], dtype: 'float64' },
    ]);
  });

  it('turns it into safetensors that the safetensors library loads as the same arrays', async () => {
    const npz = path.join(dir, 'model.npz');
    const out = path.join(dir, 'model.safetensors');
    await toSafetensors(npz, await layoutOf(npz), out);
    const same = await python(`
import sys, json, numpy as np
from safetensors.numpy import load_file
from safetensors import safe_open
loaded = load_file(sys.argv[1])
with np.load(sys.argv[1].replace(".safetensors", ".npz")) as original:
  same = {name: bool(loaded[name].dtype == original[name].dtype and np.array_equal(loaded[name], original[name])) for name in original.files}
with safe_open(sys.argv[1], "np") as f:
  metadata = f.metadata()
print(json.dumps({"same": same, "metadata": metadata}))`, out);
    expect(same).toEqual({
      same: { 'conv.weight': true, 'conv.bias': true, steps: true, mask: true, empty: true, table: true },
      metadata: { format: 'np' },
    });
  });

  it('refuses clearly what safetensors cannot hold', async () => {
    const npz = path.join(dir, 'complex.npz');
    await python('import sys, numpy as np; np.savez(sys.argv[1], weights=np.ones(3, dtype=np.float32), phase=np.ones(2, dtype=np.complex64))', npz);
    const arrays = await layoutOf(npz);
    expect(arrays.map((a) => a.dtype)).toEqual(['float32', 'complex64']);
    expect(() => planSafetensors(arrays, {})).toThrow(SafetensorsRefusal);
    expect(() => planSafetensors(arrays, {})).toThrow(/array "phase" of dtype complex64.*download it as npz/);

    // The shim writes little-endian arrays; another byte order is shown as numpy's descr and not converted.
    const bigEndian = path.join(dir, 'big-endian.npz');
    await python('import sys, numpy as np; np.savez(sys.argv[1], w=np.ones(3, dtype=">f4"))', bigEndian);
    const [foreign] = await layoutOf(bigEndian);
    expect(foreign!.dtype).toBe('>f4');
    expect(() => planSafetensors([foreign!], {})).toThrow(/array "w" of dtype >f4/);
  });

  it('refuses files that are not plain npz archives', async () => {
    const compressed = path.join(dir, 'compressed.npz');
    await python('import sys, numpy as np; np.savez_compressed(sys.argv[1], w=np.ones(1000))', compressed);
    await expect(layoutOf(compressed)).rejects.toThrow(NpzError);
    const text = path.join(dir, 'text.npz');
    await python('import sys; open(sys.argv[1], "w").write("not a zip")', text);
    await expect(layoutOf(text)).rejects.toThrow(/not a ZIP archive/);
  });
});
