// Checkpoints: a run whose global model is `size-mb` MB is saved by Pollen (the shim's .npz
// streamed into GridFS) and downloaded again as npz and as safetensors, against the same steps
// for a 1 MB model in the same run. For each step: wall time, and the Pollen process's peak
// memory above idle (VmHWM after resetting it through /proc/<pid>/clear_refs, minus VmRSS just
// before; FerretDB's the same way, for information). Each model size runs in a fresh Pollen (one
// FerretDB for all).
//
//   node bench/checkpoints.mjs [--size-mb=500] [--arrays=50] [--sample-ms=5]
import { createHash, randomBytes } from 'node:crypto';
import {
  connectWebSocket, createProject, createTrainingConfig, graphql, loadAverage, mb, ms, option, printTable, processMemory,
  progress, ratio, registerUser, resetPeakMemory, runBenchmark, sampleRss, startFerretDB, startPollen, untilJobEnds, untilQuiet,
  uploadApp,
} from './lib.mjs';
import JSZip from 'jszip';

const BASELINE_MB = 1;
const TARGET_RISE_BYTES = 64 * 2 ** 20;

await runBenchmark(async () => {
  const sizeMb = option('size-mb', 500);
  const arrays = option('arrays', 50);
  const sampleMs = option('sample-ms', 5);
  const loadBefore = loadAverage();
  const ferretdb = await startFerretDB();
  const env = { MONGODB_URI: `${ferretdb.uri}pollen`, JWT_SECRET: randomBytes(32).toString('hex') };

  const rows = [];
  for (const modelMb of [BASELINE_MB, sizeMb]) {
    progress(`${modelMb} MB model: fresh Pollen`);
    const pollen = await startPollen({ env });
    rows.push(await measure(pollen, ferretdb.pid, modelMb, arrays, sampleMs));
    await pollen.stop();
  }

  console.log(`\ncheckpoints: one round of an app whose global model is ${arrays} float32 arrays, each measurement in a fresh ` +
    'Pollen; rise = VmHWM above idle VmRSS of the Pollen process (sampled VmRSS every ' + `${sampleMs} ms as a cross-check); MB = 10^6 bytes`);
  const [base, large] = rows;
  printTable(['model', 'step', 'bytes MB', 'wall ms', 'MB/s', 'rise MB', 'sampled rise MB', 'rise / bytes', 'time vs 1 MB', 'FerretDB rise MB'],
    rows.flatMap((row) => row.steps.map((step, i) => [
      `${row.modelMb} MB`, step.name, mb(step.bytes), ms(step.wallMs), (step.bytes / 1e6 / (step.wallMs / 1000)).toFixed(1),
      mb(step.rise), mb(step.sampledRise), ratio(step.rise, step.bytes), row === base ? '-' : ratio(step.wallMs, base.steps[i].wallMs),
      mb(step.databaseRise),
    ])));
  const worst = Math.max(...large.steps.map((step) => step.rise));
  console.log(`\ntarget ${sizeMb} MB checkpoint: Pollen's RSS rises by <= ${mb(TARGET_RISE_BYTES)} MB while it is saved or downloaded: ` +
    `${worst <= TARGET_RISE_BYTES ? 'met' : 'MISSED'} (worst step ${mb(worst)} MB; ` +
    `${large.steps.map((step) => `${step.name} ${mb(step.rise)}`).join(', ')}; the ${BASELINE_MB} MB model's worst: ` +
    `${mb(Math.max(...base.steps.map((step) => step.rise)))} MB)`);
  console.log(`load average before: ${loadBefore}; after: ${loadAverage()}`);
});

/** Saves a `modelMb` MB model through a one-round run, then downloads it in both formats; each step's figures. */
async function measure(pollen, ferretdbPid, modelMb, arrays, sampleMs) {
  const user = await registerUser(pollen, `checkpoints${Date.now()}`);
  const projectId = await createProject(pollen, user.token, `checkpoints ${modelMb} MB`);
  const appId = await uploadApp(pollen, user.token, projectId, await bigModelApp(modelMb, arrays), 'big-model.zip');
  const configId = await createTrainingConfig(pollen, user.token, projectId, { rounds: 1, clients: 2 });
  const socket = await connectWebSocket(pollen.wsUrl, user.token);
  const steps = [];

  await untilQuiet(pollen.pid, { busyShare: 0.05, windowMs: 300, timeoutMs: 10_000 });
  let jobId;
  steps.push(await step(pollen, ferretdbPid, 'save (run + store)', sampleMs, async () => {
    ({ startTraining: { id: jobId } } = await graphql(pollen.url, user.token,
      'mutation($input: StartTrainingInput!) { startTraining(input: $input) { id } }', { input: { appId, configId } }));
    await untilJobEnds(socket, jobId);
    const { trainingJob } = await graphql(pollen.url, user.token,
      'query($id: ID!) { trainingJob(id: $id) { finalCheckpoint { sizeBytes sha256 downloadPath } } }', { id: jobId });
    if (!trainingJob.finalCheckpoint) throw new Error('the run kept no checkpoint');
    return trainingJob.finalCheckpoint.sizeBytes;
  }));
  const { trainingJob: { finalCheckpoint } } = await graphql(pollen.url, user.token,
    'query($id: ID!) { trainingJob(id: $id) { finalCheckpoint { sizeBytes sha256 downloadPath } } }', { id: jobId });
  for (const format of ['npz', 'safetensors']) {
    await untilQuiet(pollen.pid, { busyShare: 0.05, windowMs: 300, timeoutMs: 10_000 });
    steps.push(await step(pollen, ferretdbPid, `download ${format}`, sampleMs, async () => {
      const response = await fetch(new URL(`${finalCheckpoint.downloadPath}?format=${format}`, pollen.url), {
        headers: { authorization: `Bearer ${user.token}` },
      });
      if (response.status !== 200) throw new Error(`download ${format}: HTTP ${response.status} ${await response.text()}`);
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of response.body) {
        hash.update(chunk);
        bytes += chunk.length;
      }
      if (format === 'npz' && hash.digest('hex') !== finalCheckpoint.sha256) throw new Error('the npz download does not match its sha256');
      if (bytes !== Number(response.headers.get('content-length'))) throw new Error(`${format}: ${bytes} bytes, not Content-Length`);
      return bytes;
    }));
  }
  await socket.dispose();
  return { modelMb, steps };
}

/** Runs `work` (which returns the bytes it moved) with Pollen's (and FerretDB's) peak memory reset just before. */
async function step(pollen, ferretdbPid, name, sampleMs, work) {
  const idle = processMemory(pollen.pid).rss;
  const databaseIdle = processMemory(ferretdbPid).rss;
  resetPeakMemory(pollen.pid);
  resetPeakMemory(ferretdbPid);
  const sampler = sampleRss(pollen.pid, sampleMs);
  const started = performance.now();
  let bytes;
  let sampled;
  try {
    bytes = await work();
  } finally {
    sampled = sampler.stop();
  }
  const wallMs = performance.now() - started;
  return {
    name, bytes, wallMs, rise: processMemory(pollen.pid).peak - idle, sampledRise: sampled.max - idle,
    databaseRise: processMemory(ferretdbPid).peak - databaseIdle,
  };
}

/**
 * A Flower App whose ServerApp holds a `modelMb` MB model in `arrays` float32 arrays and runs one
 * round of FedAvg that trains nowhere (fraction_train = 0): the model it ends with, and Pollen
 * saves, is that model. Its ClientApp is never called.
 */
async function bigModelApp(modelMb, arrays) {
  const zip = new JSZip();
  zip.file('pyproject.toml', `[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "big-model"
version = "1.0.0"
dependencies = ["flwr>=1.42.0", "numpy>=1.26"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "pollen-bench"

[tool.flwr.app.components]
serverapp = "big_model.server_app:app"
clientapp = "big_model.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 1
model-bytes = ${Math.round(modelMb * 1e6)}
arrays = ${arrays}
`);
  zip.file('big_model/__init__.py', '');
  zip.file('big_model/client_app.py', 'from flwr.clientapp import ClientApp\n\napp = ClientApp()\n');
  zip.file('big_model/server_app.py', `import numpy as np
from flwr.app import Array, ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    count = int(context.run_config["arrays"])
    size = int(context.run_config["model-bytes"]) // 4 // count
    model = ArrayRecord({f"layer{i}.weight": Array(np.full(size, i, dtype=np.float32)) for i in range(count)})
    strategy = FedAvg(fraction_train=0.0, fraction_evaluate=0.0, min_train_nodes=0, min_evaluate_nodes=0, min_available_nodes=0)
    strategy.start(grid=grid, initial_arrays=model, num_rounds=int(context.run_config["num-server-rounds"]))
`);
  return zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
}
