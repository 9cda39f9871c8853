import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/runner/free-port.js';
import { REPO_ROOT } from './pollen-process.js';
import { running } from './processes.js';

/** Where scripts/setup-mlflow.sh installs MLflow (the same default and variable). */
const MLFLOW = path.join(process.env.POLLEN_MLFLOW_VENV ?? path.join(REPO_ROOT, '.tools/mlflow-venv'), 'bin/mlflow');

/** A real `mlflow server` on a free loopback port, its runs and artifacts in a temporary directory. */
export class MlflowServer {
  readonly output: string[] = [];

  private constructor(readonly url: string, private readonly child: ChildProcess, private readonly dir: string) {
    for (const stream of [child.stdout!, child.stderr!]) stream.on('data', (chunk: Buffer) => this.output.push(chunk.toString()));
  }

  static async start(): Promise<MlflowServer> {
    if (!existsSync(MLFLOW)) throw new Error(`${MLFLOW} is missing: run "bash scripts/setup.sh --test" (npm test does).`);
    const dir = mkdtempSync(path.join(tmpdir(), 'pollen-test-mlflow-'));
    const port = await freePort();
    const child = spawn(MLFLOW, ['server', '--host', '127.0.0.1', '--port', String(port), '--workers', '1',
      '--backend-store-uri', `sqlite:///${dir}/mlflow.db`, '--artifacts-destination', path.join(dir, 'artifacts')], {
      // Its own process group, so that stop() ends the web server it starts too.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Nothing leaves the machine, and no background job runner (it is not needed and costs CPU).
      env: { ...process.env, MLFLOW_DISABLE_TELEMETRY: 'true', DO_NOT_TRACK: 'true', MLFLOW_SERVER_ENABLE_JOB_EXECUTION: 'false' },
    });
    running.add(child);
    const server = new MlflowServer(`http://127.0.0.1:${port}`, child, dir);
    const deadline = Date.now() + 180_000;
    while (!(await fetch(`${server.url}/health`).then((r) => r.ok, () => false))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        await server.stop();
        throw new Error(`mlflow server did not start:\n${server.output.join('')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    return server;
  }

  /** A call of MLflow's REST API (`experiments/get-by-name?...`, `runs/search`, ...). */
  async api<T = Record<string, any>>(pathAndQuery: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.url}/api/2.0/mlflow/${pathAndQuery}`, body === undefined ? {} : {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`MLflow ${pathAndQuery}: ${response.status} ${await response.text()}`);
    return response.json() as Promise<T>;
  }

  /** An artifact of a run, as MLflow stored it. */
  async artifact(runId: string, artifactPath: string): Promise<Buffer> {
    const response = await fetch(`${this.url}/get-artifact?run_uuid=${runId}&path=${encodeURIComponent(artifactPath)}`);
    if (!response.ok) throw new Error(`MLflow artifact ${artifactPath}: ${response.status}`);
    return Buffer.from(await response.arrayBuffer());
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      process.kill(-this.child.pid!, 'SIGTERM');
      await exited;
    }
    running.delete(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A TCP relay in front of a server that can stop answering, as a slow or hung service does: while
 * held, connections are accepted and then left unanswered, and the ones open are cut.
 */
export class TcpGate {
  private holding = false;
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server, readonly port: number) {}

  static async start(targetPort: number): Promise<TcpGate> {
    const port = await freePort();
    let gate!: TcpGate;
    const server = createServer((client) => {
      gate.sockets.add(client);
      client.on('close', () => gate.sockets.delete(client));
      client.on('error', () => undefined);
      if (gate.holding) return;
      const upstream = new Socket().connect(targetPort, '127.0.0.1');
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    gate = new TcpGate(server, port);
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    return gate;
  }

  hold(): void {
    this.holding = true;
    for (const socket of this.sockets) socket.destroy();
  }

  pass(): void {
    this.holding = false;
    for (const socket of this.sockets) socket.destroy();
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
