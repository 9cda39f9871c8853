import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FlowerControl } from '../flower-control.js';
import { flowerEnv } from '../flower-env.js';
import { freePort } from '../free-port.js';
import { GuardedProcess } from '../guarded-process.js';
import { writeShimConfig, type Federation, type RunSetup } from './federation.js';

const FEDERATION_NAME = 'local';
/** flower-supernode, polling its SuperLink on loopback faster than Flower's fixed 3 s (see the script). */
const SUPERNODE = fileURLToPath(new URL('../../../src/runner/python/bin/flower-supernode', import.meta.url));
const READY_TIMEOUT_MS = 60_000;

/**
 * A federation of the job's own on this host: one SuperLink and `clients` SuperNodes, all on
 * 127.0.0.1 with free ports, under DATA_DIR/jobs/<id>/. The shim's settings travel in the
 * SuperLink's environment (SuperLink -> SuperExec -> ServerApp all inherit it), so the channel's
 * token stays on this host instead of inside the app bundle; only the run's settings go in it.
 */
export async function startLocalFederation(setup: RunSetup, python: string): Promise<Federation> {
  const federation = new LocalFederation(setup, python);
  try {
    await federation.start();
  } catch (error) {
    await federation.stop();
    throw error;
  }
  return federation;
}

class LocalFederation implements Federation {
  readonly name = FEDERATION_NAME;
  readonly env: NodeJS.ProcessEnv;
  control!: FlowerControl;
  private readonly processes: GuardedProcess[] = [];
  private stopping = false;

  constructor(private readonly setup: RunSetup, private readonly python: string) {
    this.env = flowerEnv(python, path.join(setup.dir, 'flwr-home'));
  }

  async start(): Promise<void> {
    const { dir, shim, job } = this.setup;
    await writeShimConfig(this.setup.appDir, this.setup.shimRun);
    const linkPort = await freePort();
    this.control = new FlowerControl(`http://127.0.0.1:${linkPort}`);
    await writeFile(path.join(dir, 'flwr-home', 'config.toml'),
      `[superlink]\ndefault = "${FEDERATION_NAME}"\n\n[superlink.${FEDERATION_NAME}]\naddress = "127.0.0.1:${linkPort}"\ninsecure = true\n`);
    this.spawn('superlink', 'flower-superlink', [path.join(path.dirname(this.python), 'flower-superlink'), '--insecure',
      '--host', '127.0.0.1', '--port', String(linkPort), '--database', path.join(dir, 'state.db'),
      '--disable-runtime-dependency-installation'],
    { POLLEN_SHIM_TARGET: shim.target, POLLEN_EVENTS_ADDRESS: shim.address, POLLEN_EVENTS_TOKEN: shim.token });
    await this.waitForHealth(linkPort);
    for (let partition = 0; partition < job.clients; partition += 1) {
      this.spawn(`supernode ${partition}`, 'flower-supernode', [this.python, SUPERNODE, '--insecure', '--superlink', `127.0.0.1:${linkPort}`,
        '--host', '127.0.0.1', '--port', String(await freePort()),
        '--node-config', `partition-id=${partition} num-partitions=${job.clients}`]);
    }
  }

  async explainFailure(reason: string | null): Promise<string | null> {
    return reason;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.processes.map((child) => child.stop()));
  }

  /** Starts `commandLine` under the guard; `command` names it in failure reasons. */
  private spawn(name: string, command: string, [executable, ...args]: string[], extraEnv: NodeJS.ProcessEnv = {}): void {
    const child = GuardedProcess.start(name, executable!, args, {
      python: this.python, env: { ...this.env, ...extraEnv }, cwd: this.setup.dir,
      onLine: (line) => this.setup.onLine(name, line),
    });
    this.processes.push(child);
    void child.exited.then(({ code, signal }) => {
      if (this.stopping) return;
      this.setup.onProcessDied(name.replace(/^superlink/, 'SuperLink').replace(/^supernode/, 'SuperNode'), command, code, signal);
    });
  }

  private async waitForHealth(port: number): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.processes[0]!.hasExited) throw new Error('The SuperLink did not start.');
      try {
        if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`The SuperLink was not ready within ${READY_TIMEOUT_MS / 1000} s.`);
  }
}
