import { execFile } from 'node:child_process';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Types } from 'mongoose';
import type { Logger } from '../../logger.js';
import { NodeStatus, type Node } from '../../modules/nodes/node.model.js';
import type { NodeHosting, NodeService } from '../../modules/nodes/node.service.js';
import type { ProjectSuperLinks } from '../federations/remote-federation.js';
import { FlowerControl } from '../flower-control.js';
import { flowerEnv } from '../flower-env.js';
import { freePort } from '../free-port.js';
import { GuardedProcess } from '../guarded-process.js';
import { PLAYBOOKS, runPlaybook, type PlaybookRun } from './ansible.js';
import { ensureDeployKey, type DeployKey } from './deploy-key.js';
import { FleetGateway } from './fleet-gateway.js';

const run = promisify(execFile);
const HELPER = fileURLToPath(new URL('../../../src/runner/python/pollen_federation.py', import.meta.url));
/** The federation name in each project's FLWR_HOME/config.toml. */
export const REMOTE_FEDERATION = 'pollen';
const READY_TIMEOUT_MS = 60_000;
const MONITOR_INTERVAL_SECONDS = 2;
const RESTART_DELAY_MS = 2_000;
const REMOVE_TIMEOUT_MS = 3 * 60_000;
/** SuperNodes' own local API port on their host; nodes sharing a host take the next ones. */
const SUPERNODE_BASE_PORT = 9094;

export interface RemoteSettings {
  python: string;
  dataDir: string;
  fleetHost: string;
}

interface NodeSnapshot { nodeId: string; status: string; lastHeartbeatAt: string | null; publicKey: string | null }

/**
 * A project's long-lived SuperLink: TLS with the project's own CA, SuperNode authentication on,
 * a persistent state database, listening on 127.0.0.1 only; a FleetGateway on FLEET_HOST is the
 * nodes' way in. A monitor process reports the nodes the SuperLink knows every few seconds.
 */
class ProjectFederation {
  private superlink?: GuardedProcess;
  private monitor?: GuardedProcess;
  private gateway?: FleetGateway;
  private linkPort = 0;
  private stopping = false;
  private starting?: Promise<void>;
  private snapshotWaiters: Array<() => void> = [];
  /** The monitor's latest report. */
  lastSnapshot: NodeSnapshot[] = [];

  constructor(
    readonly projectId: string,
    private readonly settings: RemoteSettings,
    private readonly onSnapshot: (nodes: NodeSnapshot[]) => Promise<void>,
    private readonly logger: Logger,
  ) {}

  get dir(): string {
    return path.join(this.settings.dataDir, 'federations', this.projectId);
  }

  get caFile(): string {
    return path.join(this.dir, 'pki', 'ca.crt');
  }

  get controlAddress(): string {
    return `127.0.0.1:${this.linkPort}`;
  }

  get fleetAddress(): string {
    const host = this.settings.fleetHost.includes(':') ? `[${this.settings.fleetHost}]` : this.settings.fleetHost;
    return `${host}:${this.gateway!.port}`;
  }

  /** The environment of every Flower command Pollen runs against this SuperLink. */
  get env(): NodeJS.ProcessEnv {
    return flowerEnv(this.settings.python, path.join(this.dir, 'flwr-home'));
  }

  ensureStarted(): Promise<void> {
    return (this.starting ??= this.start().catch((error) => {
      this.starting = undefined;
      throw error;
    }));
  }

  private async start(): Promise<void> {
    this.stopping = false;
    await this.ensurePki();
    await this.startSuperLink();
    const saved = await this.savedState();
    this.gateway = await FleetGateway.open({
      listenHost: this.settings.fleetHost, listenPort: saved.fleetPort ?? 0, upstreamPort: this.linkPort,
      certFile: path.join(this.dir, 'pki', 'server.crt'), keyFile: path.join(this.dir, 'pki', 'server.key'), caFile: this.caFile,
      logger: this.logger,
    });
    await writeFile(path.join(this.dir, 'federation.json'), JSON.stringify({ fleetHost: this.settings.fleetHost, fleetPort: this.gateway.port }));
    this.startMonitor();
    this.logger.info({ fleet: this.fleetAddress }, 'remote federation started');
  }

  private async ensurePki(): Promise<void> {
    const pki = path.join(this.dir, 'pki');
    await mkdir(path.join(this.dir, 'flwr-home'), { recursive: true, mode: 0o700 });
    if (!(await exists(this.caFile))) await this.helper(['ca', pki]);
    // The server certificate names FLEET_HOST: made again when that setting changes.
    const saved = await this.savedState();
    if (!(await exists(path.join(pki, 'server.crt'))) || saved.fleetHost !== this.settings.fleetHost) {
      await this.helper(['server', pki, this.settings.fleetHost, '127.0.0.1', 'localhost']);
    }
  }

  private async savedState(): Promise<{ fleetHost?: string; fleetPort?: number }> {
    try {
      return JSON.parse(await readFile(path.join(this.dir, 'federation.json'), 'utf8')) as { fleetHost?: string; fleetPort?: number };
    } catch {
      return {};
    }
  }

  private async startSuperLink(): Promise<void> {
    this.linkPort = await freePort();
    const pki = path.join(this.dir, 'pki');
    this.superlink = this.spawn('superlink', 'flower-superlink', [
      '--ssl-ca-certfile', this.caFile, '--ssl-certfile', path.join(pki, 'server.crt'), '--ssl-keyfile', path.join(pki, 'server.key'),
      '--enable-supernode-auth', '--host', '127.0.0.1', '--port', String(this.linkPort),
      '--database', path.join(this.dir, 'state.db'), '--disable-runtime-dependency-installation',
    ]);
    await writeFile(path.join(this.dir, 'flwr-home', 'config.toml'),
      `[superlink]\ndefault = "${REMOTE_FEDERATION}"\n\n[superlink.${REMOTE_FEDERATION}]\n` +
      `address = "${this.controlAddress}"\nroot-certificates = "${this.caFile}"\n`);
    await this.waitForHealth();
  }

  private startMonitor(): void {
    this.monitor = this.spawn('monitor', HELPER, ['monitor', this.controlAddress, this.caFile, String(MONITOR_INTERVAL_SECONDS)],
      (line) => {
        let parsed: { nodes?: NodeSnapshot[] };
        try {
          parsed = JSON.parse(line) as { nodes?: NodeSnapshot[] };
        } catch {
          return; // Python's warnings, not a report
        }
        if (!parsed.nodes) return;
        this.lastSnapshot = parsed.nodes;
        void this.onSnapshot(parsed.nodes).catch((error) => this.logger.warn({ err: error }, 'could not apply node states'))
          .finally(() => this.snapshotWaiters.splice(0).forEach((resolve) => resolve()));
      });
  }

  /** Resolves once the monitor's next report has been applied. */
  nextSnapshot(): Promise<void> {
    return new Promise((resolve) => this.snapshotWaiters.push(resolve));
  }

  /** Starts `command` under the guard; the SuperLink and the monitor come back if they die. */
  private spawn(name: 'superlink' | 'monitor', command: string, args: string[], onLine?: (line: string) => void): GuardedProcess {
    const executable = command === HELPER ? this.settings.python : path.join(path.dirname(this.settings.python), command);
    const finalArgs = command === HELPER ? [HELPER, ...args] : args;
    const child = GuardedProcess.start(`${name} of project ${this.projectId}`, executable, finalArgs, {
      python: this.settings.python, env: this.env, cwd: this.dir,
      onLine: onLine ?? ((line) => this.logger.debug({ process: name }, line)),
    });
    void child.exited.then(async ({ code, signal }) => {
      if (this.stopping) return;
      this.logger.warn({ process: name, code, signal }, `the ${name} of a remote federation exited; starting it again`);
      await new Promise((resolve) => setTimeout(resolve, RESTART_DELAY_MS));
      if (this.stopping) return;
      try {
        if (name === 'superlink') {
          await this.monitor?.stop();
          await this.startSuperLink();
          // The gateway forwards to the new port from now on.
          await this.gateway?.close();
          const saved = await this.savedState();
          this.gateway = await FleetGateway.open({
            listenHost: this.settings.fleetHost, listenPort: saved.fleetPort ?? 0, upstreamPort: this.linkPort,
            certFile: path.join(this.dir, 'pki', 'server.crt'), keyFile: path.join(this.dir, 'pki', 'server.key'),
            caFile: this.caFile, logger: this.logger,
          });
          this.startMonitor();
        } else {
          this.startMonitor();
        }
      } catch (error) {
        this.logger.error({ err: error }, `could not start the ${name} again`);
      }
    });
    return child;
  }

  private async waitForHealth(): Promise<void> {
    const ca = await readFile(this.caFile);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.superlink?.hasExited) throw new Error('the SuperLink exited while starting');
      const healthy = await new Promise<boolean>((resolve) => {
        const request = https.get({ host: '127.0.0.1', port: this.linkPort, path: '/health', ca, servername: 'localhost', timeout: 2_000 },
          (response) => {
            response.resume();
            resolve(response.statusCode === 200);
          });
        request.on('error', () => resolve(false));
        request.on('timeout', () => request.destroy());
      });
      if (healthy) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error(`the SuperLink was not ready within ${READY_TIMEOUT_MS / 1000} s`);
  }

  /** Runs pollen_federation.py once and returns its JSON answer. */
  async helper(args: string[]): Promise<Record<string, unknown>> {
    const { stdout } = await run(this.settings.python, [HELPER, ...args], { env: this.env, timeout: 60_000 });
    const last = stdout.trim().split('\n').at(-1) ?? '';
    return last ? (JSON.parse(last) as Record<string, unknown>) : {};
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.starting = undefined;
    await this.monitor?.stop();
    await this.gateway?.close();
    await this.superlink?.stop();
  }
}

/**
 * Every project's REMOTE federation on this instance, and what nodes need from it: keys,
 * deployment settings, their status from the SuperLink, and removal.
 */
export class RemoteFederations implements NodeHosting, ProjectSuperLinks {
  private readonly federations = new Map<string, ProjectFederation>();
  /** Runs on each project's SuperLink that want to know how many of its nodes are ONLINE, at each report. */
  private readonly onlineWatchers = new Map<string, Set<(online: number) => void>>();
  private deployKey?: Promise<DeployKey>;

  constructor(private readonly nodes: NodeService, private readonly settings: RemoteSettings, private readonly logger: Logger) {}

  get dataDir(): string {
    return this.settings.dataDir;
  }

  /** Starts the SuperLinks of projects that have deployed nodes (after a restart of Pollen). */
  async start(): Promise<void> {
    for (const projectId of await this.nodes.projectsWithSuperLinks()) {
      await this.federation(projectId.toHexString()).ensureStarted()
        .catch((error) => this.logger.error({ err: error, projectId }, 'could not start a remote federation'));
    }
  }

  async stop(): Promise<void> {
    await Promise.all([...this.federations.values()].map((federation) => federation.stop()));
    this.federations.clear();
  }

  async deployPublicKey(): Promise<string> {
    return (await (this.deployKey ??= ensureDeployKey(this.settings.dataDir))).publicKey;
  }

  async offlineNodeNames(projectId: string): Promise<string[]> {
    const nodes = await this.nodes.notOnline(new Types.ObjectId(projectId));
    return nodes.map((node) => `${node.name} (${node.status})`);
  }

  /** The running SuperLink of a project, for training on it. */
  async superlinkFor(projectId: string): Promise<{ env: NodeJS.ProcessEnv; federation: string; control: FlowerControl }> {
    const federation = this.federation(projectId);
    await federation.ensureStarted();
    return {
      env: federation.env, federation: REMOTE_FEDERATION,
      control: new FlowerControl(`https://${federation.controlAddress}`, await readFile(federation.caFile)),
    };
  }

  /**
   * Starts the project's SuperLink if needed, gives the node a key pair registered there (once),
   * and returns how to run the deploy playbook for it.
   */
  async prepareDeployment(node: Node): Promise<Omit<PlaybookRun, 'playbook' | 'target' | 'workDir' | 'onLine' | 'timeoutMs'>> {
    const federation = this.federation(node.projectId.toHexString());
    await federation.ensureStarted();
    const keyDir = path.join(federation.dir, 'nodes', node._id.toHexString());
    let flowerNodeId = node.flowerNodeId;
    if (!flowerNodeId || !(await exists(path.join(keyDir, 'node.key')))) {
      // A revoked key cannot be registered again, so a node without a registration gets a new pair.
      await rm(keyDir, { recursive: true, force: true });
      await federation.helper(['nodekey', keyDir, 'node']);
      const answer = await federation.helper(['register', federation.controlAddress, federation.caFile, path.join(keyDir, 'node.pub'),
        `${node.name}`]);
      flowerNodeId = String(answer.nodeId);
      await this.nodes.setStatus(node._id, { flowerNodeId });
    }
    const deployKey = await (this.deployKey ??= ensureDeployKey(this.settings.dataDir));
    const nodeCount = await this.nodes.countRegistered(node.projectId);
    const sameHost = await this.nodes.countEarlierOnSameHost(node);
    return {
      python: this.settings.python,
      privateKeyFile: deployKey.privateKeyFile,
      knownHostsFile: path.join(this.settings.dataDir, 'deploy', 'known_hosts'),
      vars: {
        node_id: node._id.toHexString(),
        superlink_address: federation.fleetAddress,
        node_config: `partition-id=${node.partitionId} num-partitions=${Math.max(nodeCount, node.partitionId + 1)}`,
        supernode_port: SUPERNODE_BASE_PORT + sameHost,
        node_private_key_file: path.join(keyDir, 'node.key'),
        node_public_key_file: path.join(keyDir, 'node.pub'),
        ca_cert_file: federation.caFile,
      },
    };
  }

  /** After a successful deployment: the node's status from the SuperLink's next report. */
  async settleDeployedNode(node: Node): Promise<void> {
    const federation = this.federations.get(node.projectId.toHexString());
    const current = await this.nodes.get(node._id);
    if (!federation || !current?.flowerNodeId) return;
    await Promise.race([federation.nextSnapshot(), new Promise((resolve) => setTimeout(resolve, 10_000))]);
    const entry = federation.lastSnapshot.find((candidate) => candidate.nodeId === current.flowerNodeId);
    const online = entry?.status === 'online';
    await this.nodes.setStatus(node._id, {
      status: online ? NodeStatus.ONLINE : NodeStatus.OFFLINE,
      lastSeenAt: online && entry.lastHeartbeatAt ? new Date(entry.lastHeartbeatAt) : current.lastSeenAt,
    });
  }

  async uninstall(node: Node): Promise<void> {
    const projectId = node.projectId.toHexString();
    const federation = this.federation(projectId);
    const log = this.logger.child({ nodeId: node._id.toHexString() });
    const deployKey = await (this.deployKey ??= ensureDeployKey(this.settings.dataDir));
    const workDir = path.join(this.settings.dataDir, 'deployments', `remove-${node._id.toHexString()}`);
    // Best effort: a host that is gone must not keep the node in the project.
    const removed = await runPlaybook({
      python: this.settings.python, playbook: PLAYBOOKS.remove, target: node, workDir, timeoutMs: REMOVE_TIMEOUT_MS,
      privateKeyFile: deployKey.privateKeyFile, knownHostsFile: path.join(this.settings.dataDir, 'deploy', 'known_hosts'),
      vars: { node_id: node._id.toHexString() }, onLine: (line) => log.debug(line),
    }).catch((error: Error) => ({ ok: false, failedTask: null, failure: error.message }));
    await rm(workDir, { recursive: true, force: true });
    if (!removed.ok) log.warn({ failedTask: removed.failedTask, failure: removed.failure }, 'could not remove the SuperNode from its host');
    if (node.flowerNodeId) {
      await federation.ensureStarted();
      await federation.helper(['unregister', federation.controlAddress, federation.caFile, node.flowerNodeId])
        .catch((error: Error) => log.warn({ err: error }, 'could not revoke the node key (already revoked?)'));
    }
    await rm(path.join(federation.dir, 'nodes', node._id.toHexString()), { recursive: true, force: true });
    // The node itself is still registered until its record goes, after this.
    const others = (await this.nodes.countRegistered(node.projectId)) - 1;
    if (others <= 0) {
      await federation.stop();
      this.federations.delete(projectId);
    }
  }

  private federation(projectId: string): ProjectFederation {
    let federation = this.federations.get(projectId);
    if (!federation) {
      federation = new ProjectFederation(projectId, this.settings, (nodes) => this.applySnapshot(projectId, nodes),
        this.logger.child({ projectId }));
      this.federations.set(projectId, federation);
    }
    return federation;
  }

  /** Node status from what the SuperLink knows; deploying and failed nodes wait for their deployment. */
  watchOnlineNodes(projectId: string, listener: (online: number) => void): () => void {
    let watchers = this.onlineWatchers.get(projectId);
    if (!watchers) this.onlineWatchers.set(projectId, (watchers = new Set()));
    watchers.add(listener);
    return () => {
      watchers.delete(listener);
      if (watchers.size === 0) this.onlineWatchers.delete(projectId);
    };
  }

  private async applySnapshot(projectId: string, snapshot: NodeSnapshot[]): Promise<void> {
    const byFlowerId = new Map(snapshot.map((entry) => [entry.nodeId, entry]));
    let online = 0;
    for (const node of await this.nodes.registeredAtSuperLink(new Types.ObjectId(projectId))) {
      if (node.status === NodeStatus.DEPLOYING || node.status === NodeStatus.FAILED) continue;
      const entry = byFlowerId.get(node.flowerNodeId!);
      const isOnline = entry?.status === 'online';
      if (isOnline) online += 1;
      const lastSeenAt = isOnline && entry.lastHeartbeatAt ? new Date(entry.lastHeartbeatAt) : node.lastSeenAt;
      const status = isOnline ? NodeStatus.ONLINE : NodeStatus.OFFLINE;
      if (status !== node.status || lastSeenAt?.getTime() !== node.lastSeenAt?.getTime()) {
        await this.nodes.setStatus(node._id, { status, lastSeenAt });
      }
    }
    for (const watcher of this.onlineWatchers.get(projectId) ?? []) watcher(online);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
