/**
 * The remote-node test harness (test/support/test-hosts.ts) and the fast parts of Pollen's node
 * playbooks: two namespace "hosts" with sshd, Ansible reaching the one that trusts the deploy key
 * and refused by the other at the playbook's first remote task, the SuperNode supervisor script
 * keeping a (fake) SuperNode alive, and a cleanup that leaves nothing behind. The full deployment
 * (wheelhouse copy, venv, pip install, a real SuperNode on a real SuperLink) takes minutes, so it is
 * not part of the suite (see src/runner/ansible/README.md).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ANSIBLE_DIR, ansibleEnv, createTestHosts, failedTask, playRecap, runCommand, VENV_BIN, writeAnsibleInventory,
  type TestNetwork,
} from './support/test-hosts.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('test-hosts.test.ts needs root (network namespaces, sshd): skipped');

let network: TestNetwork;
let workDir: string;
let inventory: string;
let env: NodeJS.ProcessEnv;

const ipNetns = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
const linkExists = (name: string) => {
  try {
    execFileSync('ip', ['link', 'show', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

describe.skipIf(!isRoot)('test hosts: network namespaces with sshd, reached by Ansible', () => {
  beforeAll(async () => {
    workDir = mkdtempSync(path.join(tmpdir(), 'pollen-test-hosts-'));
    const key = path.join(workDir, 'deploy_key');
    const wrongKey = path.join(workDir, 'other_key');
    for (const file of [key, wrongKey]) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pollen-test', '-f', file]);
    network = await createTestHosts(2);
    // Host 1 trusts the deploy key; host 2 only some other key.
    network.hosts[0]!.authorize([readFileSync(`${key}.pub`, 'utf8')]);
    network.hosts[1]!.authorize([readFileSync(`${wrongKey}.pub`, 'utf8')]);
    env = await ansibleEnv(workDir);
    inventory = writeAnsibleInventory(workDir, network.hosts, key, (host) => ({ node_id: `test-${host.index}` }));
  });

  afterAll(async () => {
    await network?.destroy();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('gives each host its own namespace and address, reaching the gateway and nothing else', async () => {
    const [first, second] = network.hosts;
    expect(network.gateway).toMatch(/^198\.18\.\d+\.1$/);
    expect(first!.address).toBe(network.gateway.replace(/\.1$/, '.11'));
    expect(second!.address).toBe(network.gateway.replace(/\.1$/, '.12'));
    expect(ipNetns()).toContain(first!.namespace);
    expect(first!.pids().length).toBeGreaterThan(0); // its sshd

    const routes = await first!.exec('ip', ['-4', 'route']);
    expect(routes.stdout.trim()).toBe(`${network.subnet} dev eth0 proto kernel scope link src ${first!.address}`);
    expect((await first!.exec('ip', ['route', 'get', '1.1.1.1'])).stderr).toMatch(/unreachable/i);
    // TCP to the gateway address (where a SuperLink will listen) and to the other host works.
    const connect = (address: string, port: number) => first!.exec('/usr/bin/python3', ['-c',
      `import socket; socket.create_connection(("${address}", ${port}), timeout=3).close()`]);
    expect((await connect(second!.address, 22)).code).toBe(0);
    const { createServer } = await import('node:net');
    const server = createServer((socket) => socket.end()).listen(0, network.gateway);
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      expect((await connect(network.gateway, (server.address() as { port: number }).port)).code).toBe(0);
    } finally {
      server.close();
    }
    // SSH sessions on a host see a private, empty home.
    writeFileSync(path.join(first!.home, 'marker'), 'host-1');
    expect((await first!.exec('cat', ['/root/marker'])).stdout).toBe('host-1');
  });

  it('lets Ansible in with the deploy key and refuses it where the key is not authorized', async () => {
    const ping = await runCommand(path.join(VENV_BIN, 'ansible'), ['all', '-i', inventory, '-m', 'ansible.builtin.ping'],
      { env, cwd: workDir, timeoutMs: 60_000 });
    expect(ping.output).toMatch(/^host-1 \| SUCCESS/m);
    expect(ping.output).toMatch(/^host-2 \| UNREACHABLE!/m);
    expect(ping.output).toMatch(/Permission denied \(publickey\)/);
    expect(network.hosts[1]!.sshdLog()).toMatch(/Connection closed by authenticating user root|Failed publickey|authenticating user root/);
  });

  it('runs the node playbooks: removal tolerates a host without the node, an unreachable host fails at "Connect to the host"', async () => {
    const remove = await runCommand(path.join(VENV_BIN, 'ansible-playbook'), ['-i', inventory, path.join(ANSIBLE_DIR, 'remove-supernode.yml')],
      { env, cwd: workDir, timeoutMs: 120_000 });
    expect(playRecap(remove.output, 'host-1'), remove.output).toMatchObject({ unreachable: 0, failed: 0 });
    expect(playRecap(remove.output, 'host-2'), remove.output).toMatchObject({ unreachable: 1 });
    expect(failedTask(remove.output, 'host-2')).toBe('Connect to the host');
    expect(remove.code).not.toBe(0);

    // The deploy playbook fails on host 2 at the same task, before anything is copied.
    const deploy = await runCommand(path.join(VENV_BIN, 'ansible-playbook'), ['-i', inventory, '--limit', 'host-2',
      '-e', 'superlink_address=198.18.0.1:9092', path.join(ANSIBLE_DIR, 'deploy-supernode.yml')], { env, cwd: workDir, timeoutMs: 120_000 });
    expect(failedTask(deploy.output, 'host-2'), deploy.output).toBe('Connect to the host');
    expect(deploy.output).toMatch(/UNREACHABLE!.*Permission denied \(publickey\)/);
  });

  it('keeps a SuperNode running with the supervisor script, and stops all of it', async () => {
    const host = network.hosts[0]!;
    // A node directory as the deploy playbook lays it out, with a fake flower-supernode that
    // "connects" and then idles with a child of its own (like flower-superexec).
    const nodeDir = path.join(host.home, '.pollen/nodes/fake');
    for (const dir of ['bin', 'run', 'logs']) mkdirSync(path.join(nodeDir, dir), { recursive: true });
    copyFileSync(path.join(ANSIBLE_DIR, 'files/pollen-supernode.sh'), path.join(nodeDir, 'bin/pollen-supernode'));
    writeFileSync(path.join(nodeDir, 'bin/supernode-launch'), [
      '#!/bin/sh',
      'NODE_DIR=/root/.pollen/nodes/fake',
      'exec >>"$NODE_DIR/logs/supernode.log" 2>&1',
      'echo $$ >"$NODE_DIR/run/supernode.pid"',
      'echo "==> pollen-supernode: starting flower-supernode (pid $$)"',
      'echo "INFO :      SuperNode ID: 42"',
      // NODE_DIR on the command line is how the script recognizes the node's processes.
      'exec /bin/sh -c "sleep 300 & wait" "$NODE_DIR/venv/bin/flower-supernode"',
      '',
    ].join('\n'), { mode: 0o755 });
    execFileSync('chmod', ['755', path.join(nodeDir, 'bin/pollen-supernode')]);
    const ctl = (...args: string[]) => host.exec('/root/.pollen/nodes/fake/bin/pollen-supernode', args);
    const pid = (name: string) => Number(readFileSync(path.join(nodeDir, 'run', `${name}.pid`), 'utf8'));

    expect((await ctl('start')).stdout).toMatch(/^started \(supervisor \d+, supernode \d+\)/);
    expect((await ctl('start')).stdout).toMatch(/^already running/);
    expect(await ctl('check', '10')).toMatchObject({ code: 0, stdout: 'connected: SuperNode ID: 42\n' });

    // The SuperNode dies: the supervisor starts a new one within ~2 s.
    const first = pid('supernode');
    process.kill(first, 'SIGKILL');
    await expect.poll(() => {
      try {
        return pid('supernode');
      } catch {
        return first;
      }
    }, { timeout: 10_000, interval: 200 }).not.toBe(first);
    expect(readFileSync(path.join(nodeDir, 'logs/supernode.log'), 'utf8')).toMatch(/flower-supernode exited with status 137; restarting in 2 s/);

    const supervisor = pid('supervisor');
    const supernode = pid('supernode');
    expect((await ctl('stop')).stdout).toBe('stopped\n');
    expect([supervisor, supernode].filter(alive)).toEqual([]);
    expect((await ctl('stop')).stdout).toBe('not running\n');
    expect((await ctl('check', '1')).code).toBe(1);
    // Nothing of the node is left in the namespace: only sshd.
    expect(host.pids().filter(alive)).toHaveLength(1);

    // And a SuperNode that stays up is what destroy() has to kill.
    expect((await ctl('start')).code).toBe(0);
  });

  it('removes every namespace, veth, bridge, process and file on destroy', async () => {
    const pids = network.hosts.flatMap((host) => host.pids());
    expect(pids.length).toBeGreaterThanOrEqual(4); // two sshd, a supervisor, a "SuperNode" and its child
    const dirs = network.hosts.map((host) => host.home);
    await network.destroy();
    expect(pids.filter(alive)).toEqual([]);
    const namespaces = ipNetns();
    for (const host of network.hosts) expect(namespaces).not.toContain(host.namespace);
    expect(linkExists(network.bridge)).toBe(false);
    expect(execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' })).not.toContain(`pv${network.runId}`);
    expect(execFileSync('ip', ['-4', '-o', 'addr'], { encoding: 'utf8' })).not.toContain(` ${network.gateway}/`);
    for (const dir of dirs) expect(() => readFileSync(path.join(dir, 'marker'))).toThrow();
  });
});
