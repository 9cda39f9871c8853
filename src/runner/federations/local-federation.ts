import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../logger.js';
import { FlowerControl } from '../flower-control.js';
import { flowerEnv } from '../flower-env.js';
import { freePort } from '../free-port.js';
import { GuardedProcess } from '../guarded-process.js';
import type { Federation, RunSetup } from './federation.js';

const FEDERATION_NAME = 'local';
/**
 * Pollen's flower-supernode and flower-superexec, first on the federation's PATH: Flower's own, polling
 * fast while the federation serves a run and slowly while it waits (see python/bin/pollen_polling.py).
 */
const FEDERATION_BIN = fileURLToPath(new URL('../../../src/runner/python/bin', import.meta.url));
const SUPERNODE = path.join(FEDERATION_BIN, 'flower-supernode');
/** flwr-simulation with Ray kept to the federation, first on a SIMULATION SuperLink's PATH (see python/pollen_simulation.py). */
const SIMULATION_BIN = fileURLToPath(new URL('../../../src/runner/python/simulation-bin', import.meta.url));
/** Binds every socket of the simulation's processes to loopback (see native/loopback_bind.c). */
const LOOPBACK_BIND = fileURLToPath(new URL('../../../.tools/lib/libpollen-loopback.so', import.meta.url));
const READY_TIMEOUT_MS = 60_000;
/** Under DATA_DIR: one directory per federation, holding its SuperLink's state, FLWR_HOME and Ray's files. */
const FEDERATIONS_DIR = 'local-federations';
/** In each federation's directory: the pid of the Pollen that runs it, so the next start knows what a killed one left. */
const OWNER_FILE = 'pollen.pid';
const RAY_LINK_PREFIX = 'pollen-ray-';

/** What Flower's Simulation Engine may use on this host (SIMULATION_* settings). */
export interface SimulationResources {
  /** CPUs Ray schedules virtual clients on. */
  cpus: number;
  /** CPUs (and GPUs) one virtual client holds while it runs: `cpus / clientCpus` run at once. */
  clientCpus: number;
  clientGpus: number;
  objectStoreBytes: number;
}

export interface LocalFederationSettings {
  python: string;
  dataDir: string;
  simulation: SimulationResources;
  /** How long a federation whose run completed waits for the next run of its kind and size (WARM_FEDERATION); 0 stops it at once. */
  keepWarmMs: number;
}

/**
 * The federations Pollen runs on its own host: one SuperLink on 127.0.0.1 with free ports, under
 * DATA_DIR/local-federations/<id>/, and either `clients` SuperNode processes (LOCAL) or Flower's
 * Simulation Engine running `clients` virtual SuperNodes as Ray actors in the SuperLink's process
 * tree (SIMULATION).
 *
 * A federation serves one run at a time. Starting one is most of what a launch costs beyond Flower's
 * own (bench/launch-overhead.mjs), so one whose run completed stays up for WARM_FEDERATION and the
 * next run of the same kind and size starts on it at once. One whose run failed, was cancelled or had
 * to be stopped in Flower is stopped with it, as is one that loses a process while it waits: a run never
 * starts on a federation in a state nobody checked.
 */
export class LocalFederations {
  /** At most one waiting federation per kind and size. */
  private readonly waiting = new Map<string, { federation: LocalFederation; timer: NodeJS.Timeout }>();
  private readonly running = new Set<LocalFederation>();
  private readonly leftoversRemoved: Promise<void>;
  private stopped = false;

  constructor(private readonly settings: LocalFederationSettings, private readonly logger: Logger) {
    this.leftoversRemoved = removeLeftovers(path.join(settings.dataDir, FEDERATIONS_DIR))
      .catch((error: Error) => logger.warn({ err: error }, 'could not remove what a previous Pollen left of its federations'));
  }

  /** A federation for `setup`'s run: a waiting one of its kind and size, or a new one. */
  async acquire(setup: RunSetup, simulation: boolean): Promise<Federation> {
    await this.leftoversRemoved;
    const key = `${simulation ? 'SIMULATION' : 'LOCAL'}:${setup.job.clients}`;
    const warm = this.waiting.get(key);
    let federation: LocalFederation;
    if (warm) {
      this.waiting.delete(key);
      clearTimeout(warm.timer);
      federation = warm.federation;
      federation.attach(setup);
    } else {
      federation = new LocalFederation(this.settings.python, this.federationDir(),
        setup.job.clients, simulation ? this.settings.simulation : undefined, () => this.discard(federation));
      this.running.add(federation);
      federation.attach(setup);
      try {
        await federation.start();
      } catch (error) {
        await this.discard(federation);
        throw error;
      }
    }
    return {
      name: FEDERATION_NAME,
      env: federation.env,
      runArgs: federation.runArgs,
      control: federation.control,
      explainFailure: async (reason) => reason,
      stop: () => this.discard(federation),
      release: () => this.keep(key, federation),
    };
  }

  /** Stops every federation, running or waiting (Pollen is stopping). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const { timer } of this.waiting.values()) clearTimeout(timer);
    this.waiting.clear();
    await Promise.all([...this.running].map((federation) => this.discard(federation)));
  }

  private async keep(key: string, federation: LocalFederation): Promise<void> {
    federation.detach();
    if (this.stopped || this.settings.keepWarmMs === 0 || this.waiting.has(key) || !federation.isWhole) {
      await this.discard(federation);
      return;
    }
    const timer = setTimeout(() => {
      this.waiting.delete(key);
      void this.discard(federation);
    }, this.settings.keepWarmMs);
    timer.unref();
    this.waiting.set(key, { federation, timer });
  }

  private async discard(federation: LocalFederation): Promise<void> {
    for (const [key, warm] of this.waiting) {
      if (warm.federation !== federation) continue;
      clearTimeout(warm.timer);
      this.waiting.delete(key);
    }
    this.running.delete(federation);
    await federation.stop().catch((error: Error) => this.logger.warn({ err: error }, 'could not stop a federation'));
  }

  private federationDir(): string {
    return path.join(this.settings.dataDir, FEDERATIONS_DIR, randomBytes(6).toString('hex'));
  }
}

/**
 * Removes the federation directories a killed Pollen left in DATA_DIR (its processes ended with it:
 * see GuardedProcess), with their short links to Ray's directories; those of a Pollen still running
 * on the same DATA_DIR stay.
 */
async function removeLeftovers(federationsDir: string): Promise<void> {
  for (const name of await readdir(federationsDir).catch(() => [])) {
    const dir = path.join(federationsDir, name);
    const owner = Number(await readFile(path.join(dir, OWNER_FILE), 'utf8').catch(() => ''));
    if (owner !== process.pid && isAlive(owner)) continue;
    await rm(dir, { recursive: true, force: true });
  }
  for (const name of await readdir(tmpdir())) {
    if (!name.startsWith(RAY_LINK_PREFIX)) continue;
    const link = path.join(tmpdir(), name);
    const target = await readlink(link).catch(() => '');
    if (target.startsWith(federationsDir + path.sep) && !existsSync(target)) await rm(link, { force: true });
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

class LocalFederation {
  readonly env: NodeJS.ProcessEnv;
  readonly runArgs: readonly string[];
  control!: FlowerControl;
  private readonly processes: GuardedProcess[] = [];
  /** A short path to the federation's Ray directory: Ray's unix sockets live under it, and such paths may not pass 107 bytes. */
  private readonly rayLink: string;
  /** The run the federation serves now, which hears of its processes' lines and deaths. */
  private run?: RunSetup;
  /** Present while the federation serves a run: its processes poll fast (python/bin/pollen_polling.py). */
  private readonly servingFile: string;
  private stopping = false;

  constructor(
    private readonly python: string,
    private readonly dir: string,
    private readonly clients: number,
    private readonly simulation: SimulationResources | undefined,
    private readonly lostWhileWaiting: () => void,
  ) {
    const env = flowerEnv(python, path.join(dir, 'flwr-home'));
    this.servingFile = path.join(dir, 'serving');
    this.env = { ...env, PATH: `${FEDERATION_BIN}${path.delimiter}${env.PATH}`, POLLEN_PYTHON: python, POLLEN_SERVING_FILE: this.servingFile };
    mkdirSync(path.join(dir, 'flwr-home'), { recursive: true, mode: 0o700 });
    this.rayLink = path.join(tmpdir(), `${RAY_LINK_PREFIX}${path.basename(dir)}`);
    this.runArgs = simulation ? ['--federation-config', [
      `num_supernodes=${clients}`, `init_args_num_cpus=${simulation.cpus}`,
      `client_resources_num_cpus=${simulation.clientCpus}`, `client_resources_num_gpus=${simulation.clientGpus}`,
    ].join(' ')] : [];
  }

  /** Every process it started is still running. */
  get isWhole(): boolean {
    return !this.stopping && this.processes.every((child) => !child.hasExited);
  }

  attach(run: RunSetup): void {
    this.run = run;
    writeFileSync(this.servingFile, '');
  }

  detach(): void {
    this.run = undefined;
    rmSync(this.servingFile, { force: true });
  }

  async start(): Promise<void> {
    await writeFile(path.join(this.dir, OWNER_FILE), String(process.pid));
    const linkPort = await freePort();
    this.control = new FlowerControl(`http://127.0.0.1:${linkPort}`);
    await writeFile(path.join(this.dir, 'flwr-home', 'config.toml'),
      `[superlink]\ndefault = "${FEDERATION_NAME}"\n\n[superlink.${FEDERATION_NAME}]\naddress = "127.0.0.1:${linkPort}"\ninsecure = true\n`);
    // Its state stays in memory (Flower's default): nothing of it is needed once the federation stops, and with a
    // file every request of a round writes to SQLite (a LOCAL round of the digits app took 60% longer, the SuperLink
    // 2.3x the CPU). A project's REMOTE SuperLink keeps its file: its registered node keys outlive restarts.
    this.spawn('superlink', 'flower-superlink', [path.join(path.dirname(this.python), 'flower-superlink'), '--insecure',
      '--host', '127.0.0.1', '--port', String(linkPort),
      '--disable-runtime-dependency-installation', ...(this.simulation ? ['--simulation'] : [])], await this.simulationEnv());
    await this.waitForHealth(linkPort);
    if (this.simulation) return; // the virtual SuperNodes start with each run
    for (let partition = 0; partition < this.clients; partition += 1) {
      this.spawn(`supernode ${partition}`, 'flower-supernode', [this.python, SUPERNODE, '--insecure', '--superlink', `127.0.0.1:${linkPort}`,
        '--host', '127.0.0.1', '--port', String(await freePort()),
        '--node-config', `partition-id=${partition} num-partitions=${this.clients}`]);
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.run = undefined;
    await Promise.all(this.processes.map((child) => child.stop()));
    await rm(this.rayLink, { force: true });
    await rm(this.dir, { recursive: true, force: true });
  }

  /** What the SuperLink's tree needs to run the Simulation Engine with Ray on loopback, under the federation's directory. */
  private async simulationEnv(): Promise<NodeJS.ProcessEnv> {
    if (!this.simulation) return {};
    const rayDir = path.join(this.dir, 'ray');
    await mkdir(rayDir, { recursive: true });
    await rm(this.rayLink, { force: true });
    await symlink(rayDir, this.rayLink);
    return {
      PATH: `${SIMULATION_BIN}${path.delimiter}${this.env.PATH}`,
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
      python: this.python, env: { ...this.env, ...extraEnv }, cwd: this.dir,
      onLine: (line) => this.run?.onLine(name, line),
    });
    this.processes.push(child);
    void child.exited.then(({ code, signal }) => {
      if (this.stopping) return;
      if (!this.run) {
        this.lostWhileWaiting();
        return;
      }
      this.run.onProcessDied(name.replace(/^superlink/, 'SuperLink').replace(/^supernode/, 'SuperNode'), command, code, signal);
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
