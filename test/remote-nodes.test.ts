/**
 * Remote nodes, through the real stack: Pollen deploys SuperNodes with Ansible over real SSH to
 * two "hosts" (network namespaces with Debian's sshd, test/support/test-hosts.ts), trains across
 * them on the project's TLS SuperLink, sees a killed node go OFFLINE, refuses a node without a
 * registered key, names the failing task of a deployment to a host that refuses the deploy key,
 * and removes nodes again.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateProjectDocument, CreateTrainingConfigDocument, DeployNodeDocument, DeploymentLogsDocument, NodeDocument,
  NodeStatusChangedDocument, ProjectNodesDocument, RegisterNodeDocument, RemoveNodeDocument, StartTrainingDocument,
  JobResultsDocument, RoundMetricsDocument, TrainingJobDocument, TrainingJobUpdatedDocument, UploadAppDocument, CancelTrainingDocument, type NodeStatusChangedSubscription,
} from './generated/graphql.js';
import { zipDirectory } from './support/fixtures.js';
import { createTestHosts, type TestNetwork } from './support/test-hosts.js';
import {
  connectWebSocket, errorCode, PollenProcess, processesUnder, REPO_ROOT, signUp, type Collected, type GraphQLClient, type WsConnection,
} from './support/testkit.js';
const isRoot = process.getuid?.() === 0;

let network: TestNetwork;
let pollen: PollenProcess;
let client: GraphQLClient;
let socket: WsConnection;
let projectId: string;
let token: string;
const nodeIds: string[] = [];
let statusEvents: Collected<NodeStatusChangedSubscription>;

/** Polls a node until `check` holds. */
async function nodeUntil(id: string, check: (node: { status: string; lastSeenAt?: string | null }) => boolean, timeout: number) {
  await expect.poll(async () => {
    const { node } = await client.data(NodeDocument, { id, last: 1, logLines: 1 });
    return check(node!);
  }, { timeout, interval: 1_000 }).toBe(true);
}

/** Uploads the example app, saves a 2-client config and starts it on the project's nodes. */
async function startRemoteJob(name: string, rounds: number): Promise<string> {
  const upload = await client.upload(UploadAppDocument, { projectId, file: null }, {
    file: { bytes: await zipDirectory(path.join(REPO_ROOT, 'examples/digits-app')), filename: 'digits.zip' },
  });
  const { createTrainingConfig } = await client.data(CreateTrainingConfigDocument, { input: { projectId, name, rounds, clients: 2 } });
  const { startTraining } = await client.data(StartTrainingDocument, {
    input: { appId: upload.data!.uploadApp.id, configId: createTrainingConfig.id, federation: 'REMOTE' },
  });
  return startTraining.id;
}

describe.skipIf(!isRoot)('remote nodes deployed with Ansible', () => {
  beforeAll(async () => {
    network = await createTestHosts(3);
    pollen = await PollenProcess.start({ env: { FLEET_HOST: network.gateway, NODE_CONNECT_TIMEOUT: '90s', ROUND_TIMEOUT: '120s' } });
    const user = await signUp(pollen);
    client = user.client;
    token = user.session.accessToken;
    projectId = (await client.data(CreateProjectDocument, { input: { name: 'across hosts' } })).createProject.id;
    socket = connectWebSocket(pollen.wsUrl, token);
    statusEvents = socket.subscribe(NodeStatusChangedDocument, { projectId });
  }, 120_000);

  afterAll(async () => {
    await socket?.client.dispose();
    await pollen?.stop();
    if (pollen) {
      expect(processesUnder(pollen.dataDir)).toEqual([]);
      pollen.removeDataDir();
    }
    await network?.destroy();
  }, 120_000);

  it('shows the deploy key and registers nodes; input mistakes are BAD_USER_INPUT', async () => {
    const { project } = await client.data(ProjectNodesDocument, { id: projectId });
    expect(project!.deployPublicKey).toMatch(/^ssh-ed25519 AAAA\S+ pollen-deploy$/);
    expect(project!.nodes).toEqual([]);
    // The user adds the key to each host's authorized_keys; host 3 trusts some other key only.
    network.hosts[0]!.authorize([project!.deployPublicKey]);
    network.hosts[1]!.authorize([project!.deployPublicKey]);
    network.hosts[2]!.authorize(['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKxOtVUAgCQXcmWkd4Z6Z6vu7x3cTmqL9y9P3X8wHy0F someone-else']);

    for (const host of network.hosts) {
      const { registerNode } = await client.data(RegisterNodeDocument, {
        input: { projectId, name: `node ${host.index}`, host: host.address, sshUser: host.sshUser, sshPort: host.sshPort },
      });
      expect(registerNode.status).toBe('REGISTERED');
      nodeIds.push(registerNode.id);
    }
    const duplicate = await client.request(RegisterNodeDocument, {
      input: { projectId, name: 'NODE 1', host: network.hosts[0]!.address, sshUser: 'root' },
    });
    expect(errorCode(duplicate)).toBe('CONFLICT');
    const hostile = await client.request(RegisterNodeDocument, {
      input: { projectId, name: 'x', host: '-oProxyCommand=touch /tmp/pwned', sshUser: 'root', sshPort: 70000 },
    });
    expect(errorCode(hostile)).toBe('BAD_USER_INPUT');
    expect(hostile.errors![0]!.extensions!.violations).toEqual(expect.arrayContaining([
      expect.objectContaining({ field: 'host' }), expect.objectContaining({ field: 'sshPort' }),
    ]));
  });

  it('deploys SuperNodes to two hosts over SSH, streaming Ansible output, and they come ONLINE', async () => {
    const deployments = await Promise.all(nodeIds.slice(0, 2).map(async (id) => (await client.data(DeployNodeDocument, { id })).deployNode));
    expect(deployments.map((d) => d.status)).toEqual(['QUEUED', 'QUEUED']);
    expect(deployments.map((d) => d.node.status)).toEqual(['DEPLOYING', 'DEPLOYING']);
    const again = await client.request(DeployNodeDocument, { id: nodeIds[0]! });
    expect(errorCode(again)).toBe('CONFLICT');

    const logs = deployments.map((d) => socket.subscribe(DeploymentLogsDocument, { deploymentId: d.id }));
    await Promise.all(logs.map((log) => log.ended));
    for (const [i, log] of logs.entries()) {
      const text = log.items.map((item) => item.deploymentLogs.line).join('\n');
      expect(text).toContain('TASK [Install Flower and the app libraries from the wheelhouse]');
      expect(text).toMatch(/PLAY RECAP[\s\S]*failed=0/);
      const { node } = await client.data(NodeDocument, { id: nodeIds[i]!, last: 5, logLines: 5000 });
      expect(node!.deployments[0]!.status).toBe('SUCCEEDED');
      expect(node!.deployments[0]!.failedTask).toBeNull();
      // Stored output is what was streamed.
      expect(node!.deployments[0]!.logs.map((line) => line.line)).toEqual(log.items.map((item) => item.deploymentLogs.line));
    }
    for (const id of nodeIds.slice(0, 2)) await nodeUntil(id, (node) => node.status === 'ONLINE' && Boolean(node.lastSeenAt), 60_000);
    expect(statusEvents.items.filter((e) => e.nodeStatusChanged.status === 'ONLINE').map((e) => e.nodeStatusChanged.id).sort())
      .toEqual(nodeIds.slice(0, 2).sort());
    // The private deploy key never left Pollen: not in the API's answers, nor in its logs.
    expect(pollen.output.join('\n')).not.toContain('PRIVATE KEY');
  }, 900_000);

  it('redeploys safely: a second run changes nothing that matters and the node stays ONLINE', async () => {
    const { deployNode } = await client.data(DeployNodeDocument, { id: nodeIds[0]! });
    const log = socket.subscribe(DeploymentLogsDocument, { deploymentId: deployNode.id });
    await log.ended;
    const recap = log.items.map((item) => item.deploymentLogs.line).join('\n');
    // Same wheelhouse, keys and settings: nothing changes on the host and the SuperNode keeps running.
    expect(recap).toMatch(/PLAY RECAP[\s\S]*changed=0 [\s\S]*failed=0/);
    await nodeUntil(nodeIds[0]!, (node) => node.status === 'ONLINE', 60_000);
  }, 600_000);

  it('fails a deployment to a host that refuses the deploy key, naming the task', async () => {
    const { deployNode } = await client.data(DeployNodeDocument, { id: nodeIds[2]! });
    await socket.subscribe(DeploymentLogsDocument, { deploymentId: deployNode.id }).ended;
    const { node } = await client.data(NodeDocument, { id: nodeIds[2]!, last: 1, logLines: 100 });
    expect(node!.status).toBe('FAILED');
    const deployment = node!.deployments[0]!;
    expect(deployment.status).toBe('FAILED');
    expect(deployment.failedTask).toBeTruthy();
    expect(deployment.failureReason).toMatch(/UNREACHABLE|Permission denied/i);
    expect(deployment.logs.map((l) => l.line).join('\n')).toContain(`TASK [${deployment.failedTask}]`);
  }, 300_000);

  it('queues a REMOTE job that needs more ONLINE nodes than there are, saying why', async () => {
    const upload = await client.upload(UploadAppDocument, { projectId, file: null }, {
      file: { bytes: await zipDirectory(path.join(REPO_ROOT, 'examples/digits-app')), filename: 'digits.zip' },
    });
    const { createTrainingConfig } = await client.data(CreateTrainingConfigDocument, {
      input: { projectId, name: 'three nodes', rounds: 2, clients: 3 },
    });
    const { startTraining } = await client.data(StartTrainingDocument, {
      input: { appId: upload.data!.uploadApp.id, configId: createTrainingConfig.id, federation: 'REMOTE' },
    });
    expect(startTraining.status).toBe('QUEUED');
    expect(startTraining.statusReason).toBe('Waiting for 3 nodes, 2 online.');
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const { trainingJob } = await client.data(TrainingJobDocument, { id: startTraining.id });
    expect(trainingJob!.status).toBe('QUEUED');
    expect((await client.data(CancelTrainingDocument, { id: startTraining.id })).cancelTraining.status).toBe('CANCELLED');

    const { createTrainingConfig: four } = await client.data(CreateTrainingConfigDocument, {
      input: { projectId, name: 'four nodes', rounds: 2, clients: 4 },
    });
    const tooMany = await client.request(StartTrainingDocument, {
      input: { appId: upload.data!.uploadApp.id, configId: four.id, federation: 'REMOTE' },
    });
    expect(errorCode(tooMany)).toBe('BAD_USER_INPUT');
  }, 120_000);

  it('trains across the two hosts to COMPLETED with metrics, keeping each round\'s model', async () => {
    const jobId = await startRemoteJob('two nodes', 2);
    await socket.subscribe(TrainingJobUpdatedDocument, { jobId }).ended;
    const { trainingJob } = await client.data(TrainingJobDocument, { id: jobId });
    expect(trainingJob!.federation).toBe('REMOTE');
    expect(trainingJob!.statusReason ?? '').toBe('');
    expect(trainingJob!.status).toBe('COMPLETED');
    const train = trainingJob!.metrics.filter((m) => m.phase === 'TRAIN');
    expect(train.map((m) => m.round)).toEqual([1, 2]);
    expect(train[0]!.values.train_loss).toEqual(expect.any(Number));
    const accuracy = trainingJob!.metrics.filter((m) => m.phase === 'SERVER_EVALUATE').map((m) => m.values.test_acc as number);
    expect(accuracy.at(-1)!).toBeGreaterThan(accuracy[0]!);
    expect(processesUnder(path.join(pollen.dataDir, 'jobs', jobId))).toEqual([]);
    const { trainingJob: results } = await client.data(JobResultsDocument, { id: jobId });
    expect(results!.checkpoints.map((c) => [c.round, c.reasons])).toEqual([[0, ['LATEST']], [1, ['LATEST']], [2, ['LATEST', 'FINAL']]]);
    const download = await fetch(new URL(results!.finalCheckpoint!.downloadPath, pollen.origin), { headers: { authorization: `Bearer ${client.token}` } });
    expect(Buffer.from(await download.arrayBuffer()).length).toBe(results!.finalCheckpoint!.sizeBytes);
  }, 600_000);

  it('refuses a SuperNode whose key the SuperLink does not know', async () => {
    const host = network.hosts[1]!;
    const { node } = await client.data(NodeDocument, { id: nodeIds[1]!, last: 1, logLines: 1 });
    expect(node!.status).toBe('ONLINE');
    // An intruder on a node host, with Flower installed and the project's CA, but a key of its own.
    const { fleetPort } = JSON.parse(readFileSync(path.join(pollen.dataDir, 'federations', projectId, 'federation.json'), 'utf8'));
    const rogue = await host.exec('bash', ['-c', [
      'set -e; cd "$(ls -d ~/.pollen/nodes/*/ | head -1)"',
      'ssh-keygen -q -t ecdsa -b 384 -N "" -f /tmp/rogue-$$ >/dev/null',
      'export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 PATH="$PWD/venv/bin:$PATH"',
      `timeout -k 5 150 venv/bin/flower-supernode --superlink ${network.gateway}:${fleetPort} ` +
        '--root-certificates keys/ca.pem --auth-supernode-private-key /tmp/rogue-$$ --port 9200 2>&1 && echo "exit=0" || echo "exit=$?"',
    ].join('\n')], { timeoutMs: 200_000 });
    const output = rogue.stdout + rogue.stderr;
    expect(output).toMatch(/Failed to activate SuperNode|could not establish a connection/i);
    expect(output).toMatch(/exit=[1-9]/);
  }, 240_000);

  it('fails a run whose node dies mid-run, naming the node, and shows the node OFFLINE', async () => {
    const jobId = await startRemoteJob('fifty rounds', 50);
    const metrics = socket.subscribe(RoundMetricsDocument, { jobId });
    await expect.poll(() => metrics.items.length, { timeout: 300_000, interval: 500 }).toBeGreaterThan(1);
    // Kill the supervisor and the SuperNode with it, as a crash of the host would.
    const host = network.hosts[1]!;
    const killed = await host.exec('bash', ['-c', 'for f in ~/.pollen/nodes/*/run/*.pid; do kill -9 $(cat "$f") 2>/dev/null || true; done; echo done']);
    expect(killed.stdout).toContain('done');
    await expect.poll(() => statusEvents.items.some((e) => e.nodeStatusChanged.id === nodeIds[1] && e.nodeStatusChanged.status === 'OFFLINE'),
      { timeout: 120_000, interval: 1_000 }).toBe(true);
    // The strategy cannot go on without its second node: the run never hangs, it fails within ROUND_TIMEOUT.
    await metrics.ended;
    const { trainingJob } = await client.data(TrainingJobDocument, { id: jobId });
    expect(trainingJob!.status).toBe('FAILED');
    expect(trainingJob!.statusReason).toContain('Nodes not ONLINE: node 2 (OFFLINE), node 3 (FAILED).');
    expect(trainingJob!.metrics.length).toBeGreaterThan(1);
    expect(processesUnder(path.join(pollen.dataDir, 'jobs', jobId))).toEqual([]);
  }, 600_000);

  it('removes nodes from their hosts, revokes their keys and stops the SuperLink with the last one', async () => {
    for (const id of nodeIds) expect((await client.data(RemoveNodeDocument, { id })).removeNode).toBe(true);
    const { project } = await client.data(ProjectNodesDocument, { id: projectId });
    expect(project!.nodes).toEqual([]);
    const leftOnHost = await network.hosts[0]!.exec('bash', ['-c', 'ls ~/.pollen/nodes 2>/dev/null | wc -l']);
    expect(leftOnHost.stdout.trim()).toBe('0');
    await expect.poll(() => processesUnder(path.join(pollen.dataDir, 'federations')), { timeout: 30_000 }).toEqual([]);
    expect(network.hosts[0]!.pids().length).toBeGreaterThan(0); // sshd only
  }, 300_000);
});
