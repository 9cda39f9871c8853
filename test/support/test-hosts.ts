/**
 * Throw-away "remote hosts" for the remote-node tests: each host is a Linux network namespace on
 * this machine running Debian's OpenSSH server on an address of its own, so Pollen (Ansible over
 * SSH) deploys to it as it would to another machine.
 *
 *   const network = await createTestHosts(2);
 *   network.hosts[0].authorize([deployPublicKey]);   // which keys each host trusts is up to the test
 *   ... ssh root@network.hosts[0].address ...        // a SuperLink listens on network.gateway
 *   await network.destroy();                          // also happens on process exit
 *
 * Layout of one network (X is picked per network, so parallel test files do not clash):
 *   root namespace:  bridge pollen-br-<run> with 198.18.X.1/24 (198.18.0.0/15: benchmarking range)
 *   host i (1..N):   namespace pollen-<run>-<i>, veth pv<run>-<i> <-> eth0 with 198.18.X.(10+i)/24,
 *                    lo up, sshd on 198.18.X.(10+i):22 with its own config, host key and
 *                    authorized_keys under /tmp/pollen-test-hosts/net-X/host-<i>/.
 * Isolation: the namespaces only have the connected 198.18.X.0/24 route (no default route), and
 * forwarding is switched off on the bridge, so a host reaches the gateway address and the other
 * hosts and nothing else: no NAT, no way out to this machine's other networks or the internet.
 * IPv6 is off on the bridge and the veths (no link-local chatter).
 * Each host also gets a private home: sshd runs in a mount namespace where a per-host directory is
 * bind-mounted over /root, so SSH sessions (and what they start) see a fresh, empty ~ like on a
 * new machine — and this machine's /root (pyenv's .bashrc, ~/.pollen) stays out of it. The rest of
 * the file system is shared: the hosts have this machine's /usr/bin/python3 (Debian's).
 *
 * Needs root (CAP_NET_ADMIN), iproute2, openssh-server and ssh-keygen (scripts/install-test-deps.sh).
 * Cleanup: destroy() kills every process still in a namespace (by pid, from `ip netns pids`), then
 * deletes the namespaces, veths, bridge and files. Networks still alive when the process exits are
 * removed synchronously from an 'exit' handler, and each createTestHosts() first reaps networks
 * whose creating process died without cleaning up (SIGKILL).
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ansibleEnvironment, inventoryHost } from '../../src/runner/remote/ansible.js';

const execFileAsync = promisify(execFile);

/** Every network's files live under here, one directory per subnet (its mkdir claims the subnet). */
export const TEST_HOSTS_ROOT = '/tmp/pollen-test-hosts';
const SSHD = '/usr/sbin/sshd';
const SSH_READY_TIMEOUT_MS = 10_000;
const KILL_GRACE_MS = 3_000;

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** What is needed to remove a network, kept on disk so another process can reap it. */
interface NetworkState {
  ownerPid: number;
  ownerStart: string;
  runId: string;
  bridge?: string;
  /** Namespace and host-side veth of every host created so far. */
  hosts: Array<{ namespace: string; veth: string }>;
}

export interface TestHost {
  /** "host-1", "host-2", … (the Ansible inventory name the tests use). */
  readonly name: string;
  readonly index: number;
  readonly address: string;
  readonly sshPort: number;
  readonly sshUser: 'root';
  /** The network namespace (`ip netns`) the host lives in. */
  readonly namespace: string;
  /** The host's private home: this directory is what SSH sessions on the host see as /root. */
  readonly home: string;
  /** The host's sshd host key (public part), e.g. "ssh-ed25519 AAAA…". */
  readonly hostPublicKey: string;
  /** A known_hosts line for the host, so clients can check its key strictly. */
  readonly knownHostsLine: string;
  /** Replaces the public keys (OpenSSH one-line format) sshd accepts for root. */
  authorize(publicKeys: readonly string[]): void;
  /**
   * Runs a command on the host — in its network namespace and the mount namespace its sshd runs
   * in (so ~ is the private home) — and resolves with its exit code and output (never rejects on a
   * non-zero exit).
   */
  exec(command: string, args?: readonly string[], options?: { timeoutMs?: number }): Promise<ExecResult>;
  /** Pids of every process in the host's network namespace (its sshd and whatever it started). */
  pids(): number[];
  /** sshd's log (it runs with -e, so connection and authentication messages are here). */
  sshdLog(): string;
  /** Kills everything on the host and removes its namespace, veth and files. Idempotent. */
  destroy(): Promise<void>;
}

export interface TestNetwork {
  readonly runId: string;
  readonly bridge: string;
  /** "198.18.X.0/24" */
  readonly subnet: string;
  /** The bridge's address in the root namespace, 198.18.X.1: where the hosts reach this machine. */
  readonly gateway: string;
  readonly hosts: readonly TestHost[];
  /** Removes every host, the bridge and the files. Idempotent. */
  destroy(): Promise<void>;
}

export interface TestHostsOptions {
  /** Public keys every host trusts from the start (default: none; see TestHost.authorize). */
  authorizedKeys?: readonly string[];
}

/** Networks of this process that are not destroyed yet. */
const live = new Set<Network>();
let exitHandlerInstalled = false;

/** Creates `count` hosts on a new bridge, each with sshd running and accepting connections. */
export async function createTestHosts(count: number, options: TestHostsOptions = {}): Promise<TestNetwork> {
  if (!Number.isInteger(count) || count < 1 || count > 200) throw new Error(`createTestHosts: bad count ${count}`);
  if (process.getuid?.() !== 0) throw new Error('createTestHosts needs root (network namespaces and sshd)');
  if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: run scripts/install-test-deps.sh (openssh-server)`);
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    throw new Error('the ip command is missing: run scripts/install-test-deps.sh (iproute2)');
  }
  if (!exitHandlerInstalled) {
    process.on('exit', () => {
      for (const network of live) network.destroySync();
    });
    exitHandlerInstalled = true;
  }
  reapStaleTestHosts();
  const network = Network.claim();
  live.add(network);
  try {
    await network.build(count, options.authorizedKeys ?? []);
  } catch (error) {
    await network.destroy();
    throw error;
  }
  return network;
}

/**
 * Removes networks whose creating process is gone (killed before it could clean up). Networks of
 * live processes — other test files running in parallel — are left alone.
 */
export function reapStaleTestHosts(): void {
  let entries: string[];
  try {
    entries = readdirSync(TEST_HOSTS_ROOT);
  } catch {
    return;
  }
  for (const entry of entries.filter((name) => /^net-\d+$/.test(name))) {
    const dir = path.join(TEST_HOSTS_ROOT, entry);
    let state: NetworkState;
    try {
      state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as NetworkState;
    } catch {
      // Being created right now (state not written yet), or garbage: only reap old garbage.
      continue;
    }
    if (processStart(state.ownerPid) === state.ownerStart) continue;
    teardownSync(state);
    rmSync(dir, { recursive: true, force: true });
  }
}

class Network implements TestNetwork {
  readonly hosts: Host[] = [];
  readonly runId = randomBytes(3).toString('hex').slice(0, 5);
  readonly bridge = `pollen-br-${this.runId}`;
  readonly subnet: string;
  readonly gateway: string;
  private readonly state: NetworkState;
  private destroyed = false;

  private constructor(readonly octet: number, readonly dir: string) {
    this.subnet = `198.18.${octet}.0/24`;
    this.gateway = `198.18.${octet}.1`;
    this.state = { ownerPid: process.pid, ownerStart: processStart(process.pid) ?? '', runId: this.runId, hosts: [] };
  }

  /** Claims a free 198.18.X.0/24: its directory's mkdir is atomic, and no interface may use it. */
  static claim(): Network {
    mkdirSync(TEST_HOSTS_ROOT, { recursive: true, mode: 0o700 });
    const inUse = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
    const octets = Array.from({ length: 256 }, (_, i) => i).sort(() => Math.random() - 0.5);
    for (const octet of octets) {
      if (inUse.includes(` 198.18.${octet}.`)) continue;
      const dir = path.join(TEST_HOSTS_ROOT, `net-${octet}`);
      try {
        mkdirSync(dir, { mode: 0o700 });
      } catch {
        continue;
      }
      const network = new Network(octet, dir);
      network.saveState();
      return network;
    }
    throw new Error('no free 198.18.X.0/24 subnet for test hosts');
  }

  async build(count: number, authorizedKeys: readonly string[]): Promise<void> {
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege separation directory
    this.state.bridge = this.bridge;
    this.saveState();
    await ip(['link', 'add', 'name', this.bridge, 'type', 'bridge']);
    // Nothing that enters the bridge is forwarded anywhere, whatever net.ipv4.ip_forward says.
    writeFileSync(`/proc/sys/net/ipv4/conf/${this.bridge}/forwarding`, '0');
    writeFileSync(`/proc/sys/net/ipv6/conf/${this.bridge}/disable_ipv6`, '1');
    await ip(['addr', 'add', `${this.gateway}/24`, 'dev', this.bridge]);
    await ip(['link', 'set', this.bridge, 'up']);
    for (let index = 1; index <= count; index += 1) {
      const host = new Host(this, index);
      this.hosts.push(host);
      this.state.hosts.push({ namespace: host.namespace, veth: host.veth });
      this.saveState();
      await host.create(authorizedKeys);
    }
    await Promise.all(this.hosts.map((host) => host.waitForSsh()));
  }

  forget(host: Host): void {
    this.state.hosts = this.state.hosts.filter((h) => h.namespace !== host.namespace);
    if (!this.destroyed) this.saveState();
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    for (const host of this.hosts) await host.destroy();
    this.finish();
  }

  /** The exit handler's variant: no waiting for graceful exits, SIGKILL straight away. */
  destroySync(): void {
    if (this.destroyed) return;
    for (const host of this.hosts) host.destroySync();
    this.finish();
  }

  private finish(): void {
    teardownSync({ ...this.state, hosts: [] });
    rmSync(this.dir, { recursive: true, force: true });
    this.destroyed = true;
    live.delete(this);
  }

  private saveState(): void {
    writeFileSync(path.join(this.dir, 'state.json.tmp'), JSON.stringify(this.state));
    execFileSync('mv', ['-f', path.join(this.dir, 'state.json.tmp'), path.join(this.dir, 'state.json')]);
  }
}

class Host implements TestHost {
  readonly name: string;
  readonly address: string;
  readonly sshPort = 22;
  readonly sshUser = 'root' as const;
  readonly namespace: string;
  readonly veth: string;
  readonly dir: string;
  readonly home: string;
  hostPublicKey = '';
  private sshdPid?: number;
  private destroyed = false;

  constructor(private readonly network: Network, readonly index: number) {
    this.name = `host-${index}`;
    this.address = `198.18.${network.octet}.${10 + index}`;
    this.namespace = `pollen-${network.runId}-${index}`;
    this.veth = `pv${network.runId}-${index}`;
    this.dir = path.join(network.dir, this.name);
    this.home = path.join(this.dir, 'home');
  }

  get knownHostsLine(): string {
    return `${this.address} ${this.hostPublicKey}`;
  }

  private get authorizedKeysFile(): string {
    return path.join(this.dir, 'authorized_keys');
  }

  async create(authorizedKeys: readonly string[]): Promise<void> {
    mkdirSync(this.home, { recursive: true, mode: 0o700 });
    await ip(['netns', 'add', this.namespace]);
    await ip(['link', 'add', this.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.namespace]);
    writeFileSync(`/proc/sys/net/ipv6/conf/${this.veth}/disable_ipv6`, '1');
    await ip(['link', 'set', this.veth, 'master', this.network.bridge, 'up']);
    // /proc/sys/net shows the namespace of the process that reads it.
    await ip(['netns', 'exec', this.namespace, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6']);
    await ip(['-n', this.namespace, 'link', 'set', 'lo', 'up']);
    await ip(['-n', this.namespace, 'addr', 'add', `${this.address}/24`, 'dev', 'eth0']);
    await ip(['-n', this.namespace, 'link', 'set', 'eth0', 'up']);

    const hostKey = path.join(this.dir, 'ssh_host_ed25519_key');
    await execFileAsync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${this.name}-host-key`, '-f', hostKey]);
    this.hostPublicKey = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
    this.authorize(authorizedKeys);
    const config = path.join(this.dir, 'sshd_config');
    writeFileSync(config, [
      `ListenAddress ${this.address}`,
      `Port ${this.sshPort}`,
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${this.authorizedKeysFile}`,
      `PidFile ${path.join(this.dir, 'sshd.pid')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'PrintMotd no',
      'PrintLastLog no',
      'AllowTcpForwarding no',
      'X11Forwarding no',
      'PermitTunnel no',
      'LoginGraceTime 20',
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'));
    const log = openSync(path.join(this.dir, 'sshd.log'), 'a');
    try {
      // `ip netns exec` runs the command in a new mount namespace (slave to ours), so the bind
      // mount of the private home over /root stays inside it; sh then becomes sshd (same pid).
      const child = spawn('ip', ['netns', 'exec', this.namespace, 'sh', '-c',
        'mount --bind "$1" /root && exec "$2" -D -e -f "$3"', 'sh', this.home, SSHD, config],
      { stdio: ['ignore', log, log] });
      this.sshdPid = child.pid;
      child.unref();
      child.on('error', () => undefined);
    } finally {
      closeSync(log);
    }
  }

  /** Resolves once sshd accepts TCP connections on the host's address. */
  async waitForSsh(): Promise<void> {
    const deadline = Date.now() + SSH_READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (await canConnect(this.address, this.sshPort)) return;
      if (this.sshdPid === undefined || !isAlive(this.sshdPid)) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`sshd on ${this.name} (${this.address}) did not start:\n${this.sshdLog()}`);
  }

  authorize(publicKeys: readonly string[]): void {
    writeFileSync(this.authorizedKeysFile, publicKeys.map((key) => `${key.trim()}\n`).join(''), { mode: 0o600 });
  }

  async exec(command: string, args: readonly string[] = [], options: { timeoutMs?: number } = {}): Promise<ExecResult> {
    // nsenter into sshd's namespaces (network + the mount namespace with the private home);
    // without a running sshd, `ip netns exec` (same network, this machine's /root).
    const prefix = this.sshdPid !== undefined && isAlive(this.sshdPid)
      ? ['nsenter', '--target', String(this.sshdPid), '--net', '--mount', '--']
      : ['ip', 'netns', 'exec', this.namespace];
    try {
      const { stdout, stderr } = await execFileAsync(prefix[0]!, [...prefix.slice(1), command, ...args], {
        timeout: options.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number | string; stdout?: string; stderr?: string; message: string };
      if (typeof failed.code !== 'number') throw error;
      return { code: failed.code, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  }

  pids(): number[] {
    return netnsPids(this.namespace);
  }

  sshdLog(): string {
    try {
      return readFileSync(path.join(this.dir, 'sshd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    const pids = this.pids();
    for (const pid of pids) signal(pid, 'SIGTERM');
    const deadline = Date.now() + KILL_GRACE_MS;
    while (pids.some(isAlive) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    this.destroySync();
  }

  destroySync(): void {
    if (this.destroyed) return;
    teardownHostSync({ namespace: this.namespace, veth: this.veth });
    rmSync(this.dir, { recursive: true, force: true });
    this.destroyed = true;
    this.network.forget(this);
  }
}

async function ip(args: string[]): Promise<void> {
  try {
    await execFileAsync('ip', args);
  } catch (error) {
    throw new Error(`ip ${args.join(' ')} failed: ${(error as { stderr?: string }).stderr?.trim() || String(error)}`);
  }
}

function ipSync(args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

function netnsPids(namespace: string): number[] {
  return ipSync(['netns', 'pids', namespace]).split('\n').map(Number).filter((pid) => Number.isInteger(pid) && pid > 0);
}

/** SIGKILLs whatever is left in the namespace (by pid), then removes it and its veth. */
function teardownHostSync(host: { namespace: string; veth: string }): void {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const pids = netnsPids(host.namespace).filter(isAlive);
    if (pids.length === 0) break;
    for (const pid of pids) signal(pid, 'SIGKILL');
    execFileSync('sleep', ['0.02']);
  }
  ipSync(['netns', 'delete', host.namespace]);
  // The namespace's end (eth0) takes the pair with it; this is for a veth whose move failed.
  ipSync(['link', 'delete', host.veth]);
}

function teardownSync(state: NetworkState): void {
  for (const host of state.hosts) teardownHostSync(host);
  if (state.bridge) ipSync(['link', 'delete', state.bridge]);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function isAlive(pid: number): boolean {
  try {
    // A zombie still answers kill(0); it has exited for our purposes.
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The process's start time (field 22 of /proc/PID/stat), to tell a pid from its reuse. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 1_000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------------------------------------
// Ansible against test hosts, with the environment and inventory entries of Pollen's runner
// (src/runner/remote/ansible.ts).

export const ANSIBLE_DIR = fileURLToPath(new URL('../../src/runner/ansible/', import.meta.url));
export const VENV_BIN = fileURLToPath(new URL('../../.venv/bin/', import.meta.url));

/** The environment of Ansible runs that keep everything in `workDir`: the one Pollen's runner uses. */
export function ansibleEnv(workDir: string): Promise<NodeJS.ProcessEnv> {
  return ansibleEnvironment(VENV_BIN, workDir);
}

/**
 * Writes an inventory (JSON, read by Ansible's yaml plugin) of the given hosts, with their host keys
 * already in its known_hosts, as Pollen's runner writes one host's. `hostVars` go to each host.
 */
export function writeAnsibleInventory(workDir: string, hosts: readonly TestHost[], privateKeyFile: string,
  hostVars: (host: TestHost) => Record<string, unknown> = () => ({})): string {
  const knownHosts = path.join(workDir, 'known_hosts');
  writeFileSync(knownHosts, hosts.map((host) => `${host.knownHostsLine}\n`).join(''));
  const inventory = path.join(workDir, 'inventory.json');
  writeFileSync(inventory, JSON.stringify({
    all: {
      hosts: Object.fromEntries(hosts.map((host) => [host.name, {
        ...inventoryHost({ host: host.address, sshPort: host.sshPort, sshUser: host.sshUser }, privateKeyFile, knownHosts),
        ...hostVars(host),
      }])),
    },
  }, null, 2), { mode: 0o600 });
  return inventory;
}

export interface CommandResult {
  code: number | null;
  output: string;
  /** Wall-clock milliseconds. */
  ms: number;
}

/** Runs a command (e.g. .venv/bin/ansible-playbook), collecting stdout and stderr together. */
export function runCommand(command: string, args: readonly string[], options: {
  env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number;
} = {}): Promise<CommandResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout!.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => chunks.push(chunk));
    const timer = setTimeout(() => child.kill('SIGTERM'), options.timeoutMs ?? 600_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output: Buffer.concat(chunks).toString('utf8'), ms: Date.now() - started });
    });
  });
}

/** The PLAY RECAP counters of one host in ansible-playbook's output. */
export function playRecap(output: string, host: string): Record<string, number> | undefined {
  const line = output.split('\n').find((l) => l.startsWith(`${host} `) && l.includes(' : ok='));
  if (!line) return undefined;
  return Object.fromEntries([...line.matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
}

/** The name of the task during which `host` failed or was unreachable. */
export function failedTask(output: string, host: string): string | undefined {
  let task: string | undefined;
  for (const line of output.split('\n')) {
    const header = /^TASK \[(.+)\] \**$/.exec(line);
    if (header) task = header[1];
    if (line.startsWith(`fatal: [${host}]`) || line.startsWith(`failed: [${host}]`)) return task;
  }
  return undefined;
}
