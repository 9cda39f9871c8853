import { execFile } from 'node:child_process';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Logger } from '../logger.js';
import { DEFAULT_ARCHIVE_LIMITS, extractAppArchive, type AppArchive } from '../modules/apps/app-archive.js';
import type { AppService } from '../modules/apps/app.service.js';
import { FlowerAppModel, type FlowerApp } from '../modules/apps/flower-app.model.js';
import { MetricPhase, type MetricValues } from '../modules/training/round-metric.model.js';
import { TrainingJobStatus, type TrainingJob } from '../modules/training/training-job.model.js';
import type { TrainingService } from '../modules/training/training.service.js';
import { EventChannel, type ShimEvent } from './event-channel.js';
import { freePort } from './free-port.js';
import { GuardedProcess } from './guarded-process.js';
import type { JobExecution, JobLauncher } from './training-runner.js';

const run = promisify(execFile);
const SHIM = fileURLToPath(new URL('../../src/runner/python/pollen_shim.py', import.meta.url));
const FEDERATION = 'local';
const READY_TIMEOUT_MS = 60_000;
/** `flwr list` costs over a second of CPU, so it is a slow fallback to the shim's events. */
const STATUS_POLL_MS = 5_000;
const LOG_FLUSH_MS = 200;
const REASON_LOG_LINES = 8;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;
/** Flower's strategies log this (with the counts) while too few SuperNodes are connected. */
const WAITING_FOR_NODES = /Waiting for nodes to connect: (\d+) connected \(minimum required: (\d+)\)/;

export interface LocalFederationSettings {
  /** The Python of the venv that has flwr; its bin/ holds the Flower commands. */
  python: string;
  dataDir: string;
  nodeConnectTimeoutSeconds: number;
  roundTimeoutSeconds: number;
}

/**
 * Runs each job on a federation of its own on this host: one SuperLink and `clients` SuperNodes,
 * all on 127.0.0.1 with free ports, under DATA_DIR/jobs/<id>/. The only place that knows Flower
 * is a set of Python processes and a CLI.
 */
export function localFederationLauncher(
  training: TrainingService,
  apps: AppService,
  settings: LocalFederationSettings,
  logger: Logger,
): JobLauncher {
  return (job) => LocalRun.start(job, { training, apps, settings, logger: logger.child({ jobId: job._id.toHexString() }) });
}

interface Deps { training: TrainingService; apps: AppService; settings: LocalFederationSettings; logger: Logger }
type Outcome = Awaited<JobExecution['outcome']>;

class LocalRun implements JobExecution {
  readonly outcome: Promise<Outcome>;
  private settle!: (outcome: Outcome) => void;
  private settled = false;
  private readonly processes: GuardedProcess[] = [];
  private channel?: EventChannel;
  private flowerRunId?: string;
  private pendingLogs: Array<{ at: Date; line: string }> = [];
  private readonly recentLines: string[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private lastProgressAt = Date.now();
  private waitingForNodesSince?: number;
  private nodesSeen = '';
  private running = false;
  private stopping = false;
  private polling = false;
  /** The user's ServerApp, which the shim imports and runs. */
  private shimTarget = '';
  /** Metrics are stored and published one after another, in the order the shim sent them. */
  private recording: Promise<void> = Promise.resolve();

  private constructor(private readonly job: TrainingJob, private readonly deps: Deps) {
    this.outcome = new Promise((resolve) => (this.settle = resolve));
  }

  static async start(job: TrainingJob, deps: Deps): Promise<LocalRun> {
    const localRun = new LocalRun(job, deps);
    try {
      await localRun.launch();
    } catch (error) {
      await localRun.teardown();
      throw error;
    }
    return localRun;
  }

  private get id(): string {
    return this.job._id.toHexString();
  }

  private get dir(): string {
    return path.join(this.deps.settings.dataDir, 'jobs', this.id);
  }

  private get env(): NodeJS.ProcessEnv {
    const bin = path.dirname(this.deps.settings.python);
    return {
      ...process.env,
      // Flower calls home unless told not to; these machines (and many users') are offline.
      FLWR_TELEMETRY_ENABLED: '0',
      FLWR_DISABLE_UPDATE_CHECK: '1',
      FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION: '1',
      FLWR_HOME: path.join(this.dir, 'flwr-home'),
      // The SuperLink and SuperNodes start flower-superexec and flwr-*app by name.
      PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`,
      PYTHONUNBUFFERED: '1',
    };
  }

  private async launch(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
    await mkdir(path.join(this.dir, 'flwr-home'), { recursive: true, mode: 0o700 });
    this.channel = await EventChannel.open((event) => this.onShimEvent(event));
    await this.prepareApp();

    const linkPort = await freePort();
    await writeFile(path.join(this.dir, 'flwr-home', 'config.toml'),
      `[superlink]\ndefault = "${FEDERATION}"\n\n[superlink.${FEDERATION}]\naddress = "127.0.0.1:${linkPort}"\ninsecure = true\n`);
    // The shim's settings travel in the environment (SuperLink -> SuperExec -> ServerApp all inherit it),
    // so the channel's token stays on this host instead of inside the app bundle.
    this.spawn('superlink', 'flower-superlink', ['--insecure', '--host', '127.0.0.1', '--port', String(linkPort),
      '--database', path.join(this.dir, 'state.db'), '--disable-runtime-dependency-installation']);
    await this.waitForHealth(linkPort);
    for (let partition = 0; partition < this.job.clients; partition += 1) {
      this.spawn(`supernode ${partition}`, 'flower-supernode', ['--insecure', '--superlink', `127.0.0.1:${linkPort}`,
        '--host', '127.0.0.1', '--port', String(await freePort()),
        '--node-config', `partition-id=${partition} num-partitions=${this.job.clients}`]);
    }

    this.flowerRunId = await this.submit();
    await this.deps.training.update(this.id, { flowerRunId: this.flowerRunId });
    this.lastProgressAt = Date.now();
    this.timers.push(setInterval(() => void this.pollStatus(), STATUS_POLL_MS));
    this.timers.push(setInterval(() => this.checkWatchdogs(), 1_000));
    this.timers.push(setInterval(() => void this.flushLogs(), LOG_FLUSH_MS));
  }

  /** Unpacks the stored archive and puts the shim in front of the user's ServerApp. */
  private async prepareApp(): Promise<void> {
    const app = await FlowerAppModel.findById(this.job.appId).lean<FlowerApp>().exec();
    if (!app?.archiveFileId) throw new Error('the app was deleted');
    const appDir = path.join(this.dir, 'app');
    const bytes = await this.deps.apps.readArchive(app);
    await extractAppArchive(bytes, archiveOf(app), appDir, { ...DEFAULT_ARCHIVE_LIMITS, maxBytes: bytes.length });
    await copyFile(SHIM, path.join(appDir, 'pollen_shim.py'));
    this.shimTarget = app.components.serverapp;
    const pyproject = path.join(appDir, 'pyproject.toml');
    await writeFile(pyproject, pointServerAppAtShim(await readFile(pyproject, 'utf8')));
  }

  private spawn(name: string, command: string, args: string[]): void {
    const env = name === 'superlink'
      ? { ...this.env, POLLEN_SHIM_TARGET: this.shimTarget, POLLEN_EVENTS_ADDRESS: this.channel!.address, POLLEN_EVENTS_TOKEN: this.channel!.token }
      : this.env;
    const child = GuardedProcess.start(name, path.join(path.dirname(this.deps.settings.python), command), args, {
      python: this.deps.settings.python, env, cwd: this.dir,
      onLine: (line) => this.remember(`[${name}] ${line.replace(ANSI, '')}`),
    });
    this.processes.push(child);
    void child.exited.then(({ code, signal }) => {
      if (!this.stopping && !this.settled) {
        this.finish(TrainingJobStatus.FAILED, `The ${name} process exited unexpectedly (${signal ?? `code ${code}`}).`);
      }
    });
  }

  private async waitForHealth(port: number): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.settled) throw new Error(this.reasonWithLog('The SuperLink did not start.'));
      try {
        if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(this.reasonWithLog(`The SuperLink was not ready within ${READY_TIMEOUT_MS / 1000} s.`));
  }

  private async submit(): Promise<string> {
    const overrides = Object.entries(JSON.parse(this.job.runConfigJson) as Record<string, unknown>)
      .flatMap(([key, value]) => ['--run-config', `${key}=${tomlValue(value)}`]);
    const { stdout } = await this.flwr(['run', path.join(this.dir, 'app'), FEDERATION, ...overrides, '--format', 'json']);
    const answer = JSON.parse(stdout) as { success?: boolean; 'run-id'?: number | string; 'error-message'?: string };
    if (!answer.success || answer['run-id'] === undefined) {
      throw new Error(`Flower refused the run: ${answer['error-message'] ?? stdout.trim()}`);
    }
    return String(answer['run-id']);
  }

  private flwr(args: string[]) {
    return run(path.join(path.dirname(this.deps.settings.python), 'flwr'), args, {
      env: this.env, cwd: this.dir, timeout: 60_000, maxBuffer: 16 * 1024 * 1024,
    });
  }

  /** Flower's own word on the run, as a fallback to the shim's start and end events. */
  private async pollStatus(): Promise<void> {
    if (this.settled || this.stopping || this.polling || !this.flowerRunId) return;
    this.polling = true;
    let status: string | undefined;
    let details: string | undefined;
    try {
      const { stdout } = await this.flwr(['list', '--run-id', this.flowerRunId, '--format', 'json']);
      const run = (JSON.parse(stdout) as { runs?: Array<{ status?: string; 'status-details'?: string }> }).runs?.[0];
      status = run?.status;
      details = run?.['status-details'];
    } catch {
      return; // try again at the next poll
    } finally {
      this.polling = false;
    }
    if (status === 'running') await this.markRunning();
    if (status?.startsWith('finished:')) {
      await this.flushLogs();
      if (status === 'finished:completed') this.finish(TrainingJobStatus.COMPLETED, null);
      else {
        const why = details && details !== 'N/A' ? ` ${details}` : '';
        this.finish(TrainingJobStatus.FAILED, this.reasonWithLog(`Flower reported the run ${status}.${why}`));
      }
    }
  }

  private onShimEvent(event: ShimEvent): void {
    const at = new Date(event.at);
    switch (event.type) {
      case 'start':
        void this.markRunning();
        break;
      case 'round':
        this.lastProgressAt = Date.now();
        break;
      case 'metric':
        this.lastProgressAt = Date.now();
        this.waitingForNodesSince = undefined;
        this.recording = this.recording
          .then(() => this.deps.training.recordMetric(this.job, event.round, event.phase as MetricPhase, jsonValues(event.values), at))
          .catch((error) => this.deps.logger.error({ err: error }, 'could not record a metric'));
        break;
      case 'log':
        this.onServerAppLine(event.line.replace(ANSI, ''), at);
        break;
      case 'end':
        if (event.status === 'failed' && event.error) this.remember(`[serverapp] ${event.error}`);
        // The ServerApp is done: ask Flower for the final word now rather than at the next poll.
        void this.pollStatus();
        break;
    }
  }

  private onServerAppLine(line: string, at: Date): void {
    this.pendingLogs.push({ at, line });
    this.remember(line);
    const waiting = WAITING_FOR_NODES.exec(line);
    if (waiting) {
      this.waitingForNodesSince ??= Date.now();
      this.nodesSeen = `${waiting[1]} of the ${waiting[2]} SuperNodes it needs`;
    }
  }

  private async markRunning(): Promise<void> {
    if (this.running || this.settled) return;
    this.running = true;
    await this.deps.training.update(this.id, { status: TrainingJobStatus.RUNNING });
  }

  private checkWatchdogs(): void {
    if (this.settled || this.stopping) return;
    const { nodeConnectTimeoutSeconds, roundTimeoutSeconds } = this.deps.settings;
    if (this.waitingForNodesSince !== undefined && Date.now() - this.waitingForNodesSince > nodeConnectTimeoutSeconds * 1000) {
      void this.failByWatchdog(`Stopped by the watchdog: only ${this.nodesSeen} connected within ` +
        `NODE_CONNECT_TIMEOUT (${nodeConnectTimeoutSeconds} s).`);
    } else if (this.waitingForNodesSince === undefined && Date.now() - this.lastProgressAt > roundTimeoutSeconds * 1000) {
      void this.failByWatchdog(`Stopped by the watchdog: no round finished within ROUND_TIMEOUT (${roundTimeoutSeconds} s).`);
    }
  }

  private async failByWatchdog(reason: string): Promise<void> {
    this.stopping = true;
    await this.stopInFlower();
    await this.flushLogs();
    this.finish(TrainingJobStatus.FAILED, reason);
  }

  /** Cancel and shutdown: stop the run in Flower, then tear everything down. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.stopInFlower();
    await this.teardown();
    await this.recording;
    await this.flushLogs();
  }

  private async stopInFlower(): Promise<void> {
    if (!this.flowerRunId) return;
    await this.flwr(['stop', this.flowerRunId, FEDERATION, '--format', 'json'])
      .catch((error) => this.deps.logger.warn({ err: error }, 'flwr stop failed; tearing down anyway'));
  }

  private finish(status: Outcome['status'], reason: string | null): void {
    if (this.settled) return;
    this.settled = true;
    // Every metric and log line is stored before the job is reported finished.
    void this.recording.then(() => this.flushLogs()).finally(() => this.teardown()).finally(() => this.settle({ status, reason }));
  }

  private async teardown(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    await Promise.all(this.processes.map((child) => child.stop()));
    await this.channel?.close();
  }

  private async flushLogs(): Promise<void> {
    const lines = this.pendingLogs;
    if (lines.length === 0) return;
    this.pendingLogs = [];
    await this.deps.training.appendLogs(this.id, lines)
      .catch((error) => this.deps.logger.error({ err: error }, 'could not store log lines'));
  }

  /** Keeps the last meaningful lines for a failure reason. */
  private remember(line: string): void {
    if (!line.trim()) return;
    this.recentLines.push(line.trim());
    if (this.recentLines.length > 200) this.recentLines.splice(0, 100);
  }

  private reasonWithLog(reason: string): string {
    const meaningful = this.recentLines.filter((line) => /error|exception|traceback|failed|raise|refused/i.test(line));
    const tail = (meaningful.length > 0 ? meaningful : this.recentLines).slice(-REASON_LOG_LINES);
    return tail.length > 0 ? `${reason} Last log lines:\n${tail.join('\n')}` : reason;
  }
}

/** What extractAppArchive needs to know of a stored app (it checks the bytes again itself). */
function archiveOf(app: FlowerApp): AppArchive {
  return {
    sha256: app.sha256, sizeBytes: app.sizeBytes, rootPrefix: app.rootPrefix, files: app.files, name: app.name,
    version: app.version, publisher: app.publisher, components: app.components,
    runConfigDefaults: JSON.parse(app.runConfigDefaultsJson),
  };
}

/** Points [tool.flwr.app.components] serverapp at the shim, leaving the rest of the file as it was. */
export function pointServerAppAtShim(pyproject: string): string {
  const section = /^\[tool\.flwr\.app\.components\][ \t]*$[\s\S]*?(?=^\[|(?![\s\S]))/m.exec(pyproject);
  if (!section) throw new Error('pyproject.toml has no [tool.flwr.app.components] table');
  const body = section[0].replace(/^(\s*serverapp\s*=\s*)(["']).*?\2/m, '$1"pollen_shim:app"');
  return pyproject.slice(0, section.index) + body + pyproject.slice(section.index + section[0].length);
}

/** A run-config value as `flwr run --run-config` reads it (TOML). */
function tomlValue(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** Keeps JSON numbers (finite), strings and booleans; drops anything else. */
function jsonValues(values: Record<string, unknown>): MetricValues {
  return Object.fromEntries(Object.entries(values).filter(([, value]) =>
    typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value)))) as MetricValues;
}
