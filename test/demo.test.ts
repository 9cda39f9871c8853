import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PollenProcess, processesUnder, REPO_ROOT } from './support/testkit.js';

let pollen: PollenProcess;
beforeAll(async () => {
  pollen = await PollenProcess.start();
});
afterAll(async () => {
  await pollen?.stop();
  expect(processesUnder(pollen.dataDir)).toEqual([]);
  pollen?.removeDataDir();
});

describe('npm run demo', () => {
  // As the README's quick start shows it for a laptop: 100 virtual clients on the Simulation Engine.
  it('signs up, uploads the example, trains 3 rounds on 100 simulated clients, prints the metrics live and evaluates the final model locally', async () => {
    const { stdout } = await promisify(execFile)('npm', ['run', '--silent', 'demo'], {
      cwd: REPO_ROOT, env: { ...process.env, POLLEN_URL: pollen.url, POLLEN_DEMO_CLIENTS: '100', POLLEN_DEMO_FEDERATION: 'SIMULATION' }, timeout: 240_000,
    }).catch((error: Error & { stdout?: string; stderr?: string }) => {
      // The demo's own output says why it stopped; the rejection alone says only that it did.
      throw new Error(`${error.message}\n--- demo stdout:\n${error.stdout}\n--- demo stderr:\n${error.stderr}\n` +
        `--- Pollen:\n${pollen.output.slice(-30).join('\n')}`);
    });
    expect(stdout).toMatch(/Signed up as demo\./);
    expect(stdout).toMatch(/Uploaded digits-app 1\.0\.0; it declares num-server-rounds, learning-rate/);
    expect(stdout).toMatch(/Started training job \w+: 3 rounds on 100 clients \(SIMULATION\)/);
    expect(stdout.match(/round [123] {2}TRAIN/g)).toHaveLength(3);
    expect(stdout.match(/round [123] {2}EVALUATE/g)).toHaveLength(3);
    expect(stdout).toMatch(/Final status: COMPLETED$/m);
    expect(stdout).toMatch(/^Downloaded the final model \(round 3, \d+ bytes, sha256 verified\): 0 float64\[64x10\], 1 float64\[10\]\.$/m);
    expect(stdout).toMatch(/^Evaluated it locally: test_acc=0\.\d+ test_loss=\d\.\d+; the server's evaluation of round 3: .* Equal\.$/m);
  }, 240_000);
});
