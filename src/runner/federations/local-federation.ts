import { mkdir, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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
/** flwr-simulation with Ray kept to the job, first on a SIMULATION SuperLink's PATH (see python/pollen_simulation.py). */
const SIMULATION_BIN = fileURLToPath(new URL('../../../src/runner/python/simulation-bin', import.meta.url));
/** Binds every socket of the simulation's processes to loopback (see native/loopback_bind.c). */
const LOOPBACK_BIND = fileURLToPath(new URL('../../../.tools/lib/libpollen-loopback.so', import.meta.url));
const READY_TIMEOUT_MS = 60_000;

/** What Flower's Simulation Engine may use on this host (SIMULATION_* settings). */
export interface SimulationResources {
  /** CPUs Ray schedules virtual clients on. */
  cpus: number;
  /** CPUs (and GPUs) one virtual client holds while it runs: `cpus / clientCpus` run at once. */
  clientCpus: number;
  clientGpus: number;
  objectStoreBytes: number;
}

const RAY_LINK_PREFIX = 'pollen-ray-';
const rayLinkOf = (jobId: string) => path.join(tmpdir(), `${RAY_LINK_PREFIX}${jobId}`);

/**
 * Removes the short links to Ray's directories that runs of this DATA_DIR left behind when Pollen
 * was killed (a run that ends removes its own); at start, before any run of this instance begins.
 */
export async function removeLeftRayLinks(dataDir: string): Promise<void> {
  const jobs = path.join(dataDir, 'jobs') + path.sep;
  for (const name of await readdir(tmpdir())) {
    if (!name.startsWith(RAY_LINK_PREFIX)) continue;
    const link = path.join(tmpdir(), name);
    const target = await readlink(link).catch(() => '');
    if (target.startsWith(jobs)) await rm(link, { force: true });
  }
}

/**
 * A federation of the job's own on this host: one SuperLink on 127.0.0.1 with free ports, under
 * DATA_DIR/jobs/<id>/, and either `clients` SuperNode processes (LOCAL) or, with `simulation`,
 * Flower's Simulation Engine running `clients` virtual SuperNodes as Ray actors in the SuperLink's
 * process tree (SIMULATION). The shim's settings travel in the SuperLink's environment (SuperLink
 * -> SuperExec -> ServerApp all inherit it), so the channel's token stays on this host instead of
 * inside the app bundle; only the run's settings go in it.
 */
export async function startLocalFederation(setup: RunSetup, python: string, simulation?: SimulationResources): Promise<Federation> {
  const federation = new LocalFederation(setup, python, simulation);
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
  readonly runArgs: readonly string[];
  control!: FlowerControl;
  private readonly processes: GuardedProcess[] = [];
  /** A short path to the job's Ray directory: Ray's unix sockets live under it, and such paths may not pass 107 bytes. */
  private readonly rayLink: string;
  private stopping = false;

  constructor(private readonly setup: RunSetup, private readonly python: string, private readonly simulation?: SimulationResources) {
    this.env = flowerEnv(python, path.join(setup.dir, 'flwr-home'));
    this.rayLink = rayLinkOf(setup.job._id.toHexString());
    this.runArgs = simulation ? ['--federation-config', [
      `num_supernodes=${setup.job.clients}`, `init_args_num_cpus=${simulation.cpus}`,
      `client_resources_num_cpus=${simulation.clientCpus}`, `client_resources_num_gpus=${simulation.clientGpus}`,
    ].join(' ')] : [];
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
      '--disable-runtime-dependency-installation', ...(this.simulation ? ['--simulation'] : [])],
    { POLLEN_SHIM_TARGET: shim.target, POLLEN_EVENTS_ADDRESS: shim.address, POLLEN_EVENTS_TOKEN: shim.token, ...await this.simulationEnv() });
    await this.waitForHealth(linkPort);
    if (this.simulation) return; // the virtual SuperNodes start with the run
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
    if (this.simulation) await rm(this.rayLink, { force: true });
  }

  /** What the SuperLink's tree needs to run the Simulation Engine with Ray on loopback, under the job's directory. */
  private async simulationEnv(): Promise<NodeJS.ProcessEnv> {
    if (!this.simulation) return {};
    const rayDir = path.join(this.setup.dir, 'ray');
    await mkdir(rayDir, { recursive: true });
    await rm(this.rayLink, { force: true });
    await symlink(rayDir, this.rayLink);
    return {
      PATH: `${SIMULATION_BIN}${path.delimiter}${this.env.PATH}`,
      POLLEN_PYTHON: this.python,
      POLLEN_RAY_TEMP_DIR: this.rayLink,
      POLLEN_RAY_OBJECT_STORE_BYTES: String(this.simulation.objectStoreBytes),
      RAY_USAGE_STATS_ENABLED: '0',
      // A single-node cluster on 127.0.0.1: Ray would otherwise advertise the host's address.
      RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER: '0',
      // Ray's gRPC servers bind every interface whatever the cluster's address; this binds them to loopback.
      LD_PRELOAD: LOOPBACK_BIND,
      RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO: '0',
    };
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
