// Uploads: the uploadApp mutation (multipart) validating and storing a ~20 MB app archive, and
// refusing a zip bomb that expands to 400 MB, against a tiny valid app on the same path. For each
// upload: wall time (request sent -> answer parsed) and the Pollen process's peak memory above
// idle (VmHWM after resetting it through /proc/<pid>/clear_refs, minus VmRSS just before; VmRSS
// sampled every few ms as a cross-check). Each upload runs in a fresh Pollen (see below).
//
//   node bench/uploads.mjs [--trials=3] [--size-mb=20] [--bomb-mb=400] [--sample-ms=2]
import { randomBytes } from 'node:crypto';
import {
  createProject, DIGITS_APP, loadAverage, mb, median, ms, option, postAppUpload, printTable, processMemory,
  progress, ratio, registerUser, resetPeakMemory, runBenchmark, sampleRss, startFerretDB, startPollen, untilQuiet,
  uploadApp, zipDirectory,
} from './lib.mjs';
import { declaredZipBomb, splitZipBomb } from '../test/support/zip-archives.mjs';

const MiB = 1024 * 1024;
const TARGET_MEMORY_FACTOR = 2; // peak above idle <= 2x the archive
const TARGET_BOMB_MS = 1000;

await runBenchmark(async () => {
  const trials = option('trials', 3);
  const sizeMb = option('size-mb', 20);
  const bombMb = option('bomb-mb', 400);
  const sampleMs = option('sample-ms', 2);
  const loadBefore = loadAverage();

  progress('building archives');
  const large = await largeApp(sizeMb * 1e6);
  const kinds = [
    { key: 'tiny', label: 'tiny valid app (baseline)', bytes: await zipDirectory(DIGITS_APP), expect: 'stored' },
    { key: 'large', label: `${sizeMb} MB valid app`, bytes: large, expect: 'stored' },
    // Diagnostics: the same size refused after reading it, and after checking every entry.
    { key: 'notZip', label: `${sizeMb} MB, not a ZIP (read only)`, bytes: randomBytes(large.length), expect: 'NOT_A_ZIP' },
    { key: 'badEnd', label: `${sizeMb} MB, bad pyproject (validated, not stored)`, expect: 'BAD_PYPROJECT',
      bytes: await largeApp(sizeMb * 1e6, { 'pyproject.toml': Buffer.from('[project\nname = "digits-app"\n') }) },
    { key: 'bomb', label: `bomb, declares ${bombMb} MB`, bytes: declaredZipBomb(bombMb), expect: 'ZIP_BOMB' },
    { key: 'lying', label: `bomb, declares 1 MB, inflates to ${bombMb} MB`, expect: 'ZIP_BOMB',
      bytes: splitZipBomb({ pieces: 0, mebibytes: bombMb }) },
  ];

  // Memory a process has freed stays resident for reuse (glibc arenas, V8 heap), so a second
  // upload into the same process hides most of its needs. Each measurement therefore gets a fresh
  // Pollen (on one shared FerretDB, with one JWT secret so that one sign-up serves all), warmed up
  // by one tiny upload (code paths, GridFS bucket) before its idle RSS is read.
  const ferretdb = await startFerretDB();
  const env = { MONGODB_URI: `${ferretdb.uri}pollen`, JWT_SECRET: randomBytes(32).toString('hex'), MAX_CONCURRENT_JOBS: '0' };
  let user;
  const results = new Map(kinds.map(({ key }) => [key, []]));
  for (let trial = 1; trial <= trials; trial++) {
    for (const kind of kinds) {
      progress(`trial ${trial}: ${kind.label}`);
      const pollen = await startPollen({ env });
      user ??= await registerUser(pollen, `uploader${Date.now()}`);
      await uploadApp(pollen, user.token, await createProject(pollen, user.token, `warm-up ${Date.now()}`), kinds[0].bytes);
      results.get(kind.key).push(await measureUpload(pollen, user.token, kind, sampleMs));
      await pollen.stop();
    }
  }

  console.log(`\nuploads: uploadApp over multipart, ${trials} trials each, each in a fresh Pollen after one tiny warm-up upload; ` +
    'peak = VmHWM above idle VmRSS, sampled = highest VmRSS seen every ' + `${sampleMs} ms above idle; MB = 10^6 bytes`);
  const summary = (key) => {
    const runs = results.get(key);
    return {
      wall: median(runs.map((run) => run.wallMs)),
      wallMax: Math.max(...runs.map((run) => run.wallMs)),
      peak: median(runs.map((run) => run.peakAbove)),
      peakMax: Math.max(...runs.map((run) => run.peakAbove)),
      sampledMax: Math.max(...runs.map((run) => run.sampledAbove)),
    };
  };
  const base = summary('tiny');
  printTable(['archive', 'size MB', 'answer', 'wall ms (median)', 'wall ms (max)', 'peak MB (median)', 'peak MB (max)',
    'sampled MB (max)', 'peak / size', 'time vs tiny'], kinds.map(({ key, label, bytes }) => {
    const s = summary(key);
    return [label, mb(bytes.length), results.get(key)[0].answer, ms(s.wall), ms(s.wallMax), mb(s.peak), mb(s.peakMax),
      mb(s.sampledMax), key === 'tiny' ? '-' : ratio(s.peak, bytes.length), ratio(s.wall, base.wall)];
  }));

  const largeSummary = summary('large');
  const memoryOk = largeSummary.peakMax <= TARGET_MEMORY_FACTOR * large.length;
  const limit = TARGET_MEMORY_FACTOR * large.length;
  console.log(`\ntarget ${sizeMb} MB app: peak above idle <= ${TARGET_MEMORY_FACTOR} x archive (${mb(limit)} MB): ` +
    `${memoryOk ? 'met' : 'MISSED'} (median ${mb(largeSummary.peak)} MB = ${ratio(largeSummary.peak, large.length)}, ` +
    `worst ${mb(largeSummary.peakMax)} MB; tiny baseline ${mb(base.peak)} MB)`);
  for (const key of ['bomb', 'lying']) {
    const kind = kinds.find((k) => k.key === key);
    const s = summary(key);
    console.log(`target ${kind.label} refused in < ${TARGET_BOMB_MS} ms: ${s.wallMax < TARGET_BOMB_MS ? 'met' : 'MISSED'} ` +
      `(median ${ms(s.wall)} ms, worst ${ms(s.wallMax)} ms; ${ratio(s.wall, base.wall)} the tiny app's time)`);
  }
  console.log(`load average before: ${loadBefore}; after: ${loadAverage()}`);
});

/** One upload into a fresh project (so a valid archive is stored, not found again), peak memory reset just before. */
async function measureUpload(pollen, token, kind, sampleMs) {
  const projectId = await createProject(pollen, token, `uploads ${kind.key} ${Date.now()}`);
  await untilQuiet(pollen.pid, { busyShare: 0.05, windowMs: 300, timeoutMs: 10_000 });
  const idle = processMemory(pollen.pid).rss;
  resetPeakMemory(pollen.pid);
  const sampler = sampleRss(pollen.pid, sampleMs);
  const started = performance.now();
  const { status, body } = await postAppUpload(pollen, token, projectId, kind.bytes, `${kind.key}.zip`);
  const wallMs = performance.now() - started;
  const sampled = sampler.stop();
  const { peak } = processMemory(pollen.pid);
  const error = body.errors?.[0];
  const answer = body.data?.uploadApp ? 'stored' : error?.extensions?.reason ?? error?.extensions?.code ?? `HTTP ${status}`;
  if (answer !== kind.expect) throw new Error(`${kind.label}: expected ${kind.expect}, got ${JSON.stringify(body)}`);
  return { wallMs, peakAbove: peak - idle, sampledAbove: sampled.max - idle, answer };
}

/** The digits app plus incompressible data files, about `totalBytes` zipped; `replace` swaps files. */
async function largeApp(totalBytes, replace = {}) {
  const app = await zipDirectory(DIGITS_APP);
  const files = {};
  let left = totalBytes - app.length;
  for (let i = 0; left > 200; i++) {
    const size = Math.min(MiB, left - 200); // room for each entry's headers
    files[`digits_app/data/shard-${String(i).padStart(2, '0')}.bin`] = randomBytes(size);
    left -= size + 200;
  }
  return zipDirectory(DIGITS_APP, { ...files, ...replace });
}
