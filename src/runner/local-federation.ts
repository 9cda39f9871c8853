import { execFile } from 'node:child_process';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { retryWhileDatabaseUnavailable } from '../db/database.js';
import { isDatabaseUnavailableError } from '../errors.js';
import type { Logger } from '../logger.js';
import { DEFAULT_ARCHIVE_LIMITS, extractAppArchive, type AppArchive } from '../modules/apps/app-archive.js';
import type { AppService } from '../modules/apps/app.service.js';
import { FlowerAppModel, type FlowerApp } from '../modules/apps/flower-app.model.js';
import { MetricPhase, type MetricValues } from '../modules/training/round-metric.model.js';
import { FederationKind, TrainingJobStatus, type TrainingJob } from '../modules/training/training-job.model.js';
import { LOG_LINES_KEPT, type TrainingService } from '../modules/training/training.service.js';
import { EventChannel, type ShimEvent } from './event-channel.js';
import { freePort } from './free-port.js';
import { GuardedProcess } from './guarded-process.js';
import { flowerEnv } from './flower-env.js';
import type { JobExecution, JobLauncher } from './training-runner.js';

const run = promisify(execFile);
const SHIM = fileURLToPath(new URL('../../src/runner/python/pollen_shim.py', import.meta.url));
const LOCAL_FEDERATION = 'local';
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
 * Runs each job under DATA_DIR/jobs/<id>/: a LOCAL job on a federation of its own on this host
 * (one SuperLink and `clients` SuperNodes, all on 127.0.0.1 with free ports), a REMOTE job on its
 * project's SuperLink and deployed nodes. Only src/runner/ knows that Flower is a set of Python
 * processes and a CLI.
 */
export function flowerJobLauncher(
  training: TrainingService,
  apps: AppService,
  settings: LocalFederationSettings,
  remote: RemoteSuperLinks,
  logger: Logger,
): JobLauncher {
  return (job) => LocalRun.start(job, { training, apps, settings, remote, logger: logger.child({ jobId: job._id.toHexString() }) });
}

/** REMOTE jobs run on their project's long-lived SuperLink (runner/remote/remote-federations.ts). */
export interface RemoteSuperLinks {
  superlinkFor(projectId: string): Promise<{ env: NodeJS.ProcessEnv; federation: string }>;
  /** The project's nodes that are not ONLINE now, named with their status, for failure reasons. */
  offlineNodeNames(projectId: string): Promise<string[]>;
}

interface Deps {
  training: TrainingService; apps: AppService; settings: LocalFederationSettings; remote: RemoteSuperLinks; logger: Logger;
}
type Outcome = Awaited<JobExecution['outcome']>;

class LocalRun implements JobExecution {
  readonly outcome: Promise<Outcome>;
  private settle!: (outcome: Outcome) => void;
  private settled = false;
  private readonly processes: GuardedProcess[] = [];
  private channel?: EventChannel;
  private flowerRunId?: string;
  private pendingLogs: Array<{ at: Date; line: string }> = [];
  /** The log lines being stored now, if any; one write at a time keeps them in order. */
  private flushing?: Promise<void>;
  private logsWaitForDatabase = false;
  private readonly recentLines: string[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private lastProgressAt = Date.now();
  private waitingForNodesSince?: number;
  private nodesSeen = '';
  private running = false;
  private stopping = false;
  private polling = false;
  /** The highest round with metrics, for failure reasons ("at round N"). */
  private round = 0;
  /** Aborted when the run is stopped: writes waiting for the database give up. */
  private readonly halt = new AbortController();
  /** Aborted at teardown: a `flwr` command still running (a status poll) does not outlive the run. */
  private readonly cli = new AbortController();
  /** The SuperLink of the project, for a REMOTE job. */
  private remoteLink?: { env: NodeJS.ProcessEnv; federation: string };
  /** The federation name in FLWR_HOME/config.toml that `flwr` commands use. */
  private federation = LOCAL_FEDERATION;
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

  private get isRemote(): boolean {
    return this.job.federation === FederationKind.REMOTE;
  }

  private get env(): NodeJS.ProcessEnv {
    return this.remoteLink?.env ?? flowerEnv(this.deps.settings.python, path.join(this.dir, 'flwr-home'));
  }

  private async launch(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
    await mkdir(path.join(this.dir, 'flwr-home'), { recursive: true, mode: 0o700 });
    this.channel = await EventChannel.open((event) => this.onShimEvent(event));
    await this.prepareApp();
    if (this.isRemote) await this.useProjectSuperLink();
    else await this.startLocalFederation();

    this.flowerRunId = await this.submit();
    await this.deps.training.update(this.id, { flowerRunId: this.flowerRunId });
    this.lastProgressAt = Date.now();
    this.timers.push(setInterval(() => void this.pollStatus(), STATUS_POLL_MS));
    this.timers.push(setInterval(() => this.checkWatchdogs(), 1_000));
    this.timers.push(setInterval(() => {
      if (!this.flushing) void this.flushLogs();
    }, LOG_FLUSH_MS));
  }

  /** A SuperLink and `clients` SuperNodes of the job's own, on 127.0.0.1. */
  private async startLocalFederation(): Promise<void> {
    const linkPort = await freePort();
    await writeFile(path.join(this.dir, 'flwr-home', 'config.toml'),
      `[superlink]\ndefault = "${LOCAL_FEDERATION}"\n\n[superlink.${LOCAL_FEDERATION}]\naddress = "127.0.0.1:${linkPort}"\ninsecure = true\n`);
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
  }

  /**
   * The project's SuperLink runs for longer than any job and for every job of the project, so the
   * shim's settings cannot travel in its environment: they go in pollen_shim.json inside the app.
   * The token then also reaches the SuperNodes with the app; it only opens the event channel,
   * which listens on this host's loopback, out of their reach.
   */
  private async useProjectSuperLink(): Promise<void> {
    this.remoteLink = await this.deps.remote.superlinkFor(this.job.projectId.toHexString());
    this.federation = this.remoteLink.federation;
    await writeFile(path.join(this.dir, 'app', 'pollen_shim.json'),
      JSON.stringify({ target: this.shimTarget, address: this.channel!.address, token: this.channel!.token }), { mode: 0o600 });
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
        const label = name.replace(/^superlink/, 'SuperLink').replace(/^supernode/, 'SuperNode');
        const reason = `The ${label} process (${command}) ${howItEnded(code, signal)} at round ${this.round}; ` +
          'the run cannot go on without it.';
        // A crash (an exit code) usually left a traceback worth showing; a kill left nothing of its own.
        this.finish(TrainingJobStatus.FAILED, signal || (code ?? 0) > 128 ? reason : this.reasonWithLog(reason));
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
    const { stdout } = await this.flwr(['run', path.join(this.dir, 'app'), this.federation, ...overrides, '--format', 'json']);
    const answer = JSON.parse(stdout) as { success?: boolean; 'run-id'?: number | string; 'error-message'?: string };
    if (!answer.success || answer['run-id'] === undefined) {
      throw new Error(`Flower refused the run: ${answer['error-message'] ?? stdout.trim()}`);
    }
    return String(answer['run-id']);
  }

  private flwr(args: string[]) {
    return run(path.join(path.dirname(this.deps.settings.python), 'flwr'), args, {
      env: this.env, cwd: this.dir, timeout: 60_000, maxBuffer: 16 * 1024 * 1024, signal: this.cli.signal,
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
      case 'metric': {
        this.lastProgressAt = Date.now();
        this.waitingForNodesSince = undefined;
        this.round = Math.max(this.round, event.round);
        const record = () => this.deps.training.recordMetric(this.job, event.round, event.phase as MetricPhase, jsonValues(event.values), at);
        // A metric is kept through a database outage: stored (in order) once the database is back.
        this.recording = this.recording
          .then(() => retryWhileDatabaseUnavailable(record, {
            signal: this.halt.signal,
            onUnavailable: (error) => this.deps.logger.warn({ err: error, round: event.round, phase: event.phase },
              'database unavailable: will store the round metric once it is back'),
          }))
          .catch((error) => this.deps.logger.error({ err: error }, 'could not record a metric'));
        break;
      }
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
    try {
      await this.deps.training.update(this.id, { status: TrainingJobStatus.RUNNING });
    } catch (error) {
      this.running = false; // Flower's next status poll tries again
      this.deps.logger.warn({ err: error }, 'could not mark the job RUNNING');
    }
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
    this.halt.abort();
    await this.stopInFlower();
    await this.teardown();
    await this.recording;
    await this.flushAllLogs();
  }

  private async stopInFlower(): Promise<void> {
    if (!this.flowerRunId) return;
    await this.flwr(['stop', this.flowerRunId, this.federation, '--format', 'json'])
      .catch((error) => this.deps.logger.warn({ err: error }, 'flwr stop failed; tearing down anyway'));
  }

  private finish(status: Outcome['status'], reason: string | null): void {
    if (this.settled) return;
    this.settled = true;
    // No process outlives the run, and every metric and log line is stored (waiting out a database
    // outage if need be) before the job is reported finished.
    void this.teardown().finally(() => this.recording).then(() => this.flushAllLogs())
      .then(() => this.withOfflineNodes(status, reason), () => reason)
      .then((final) => this.settle({ status, reason: final }));
  }

  /** A REMOTE run that failed names the project's nodes that are not ONLINE: the usual cause. */
  private async withOfflineNodes(status: Outcome['status'], reason: string | null): Promise<string | null> {
    if (!this.isRemote || status !== TrainingJobStatus.FAILED) return reason;
    const offline = await this.deps.remote.offlineNodeNames(this.job.projectId.toHexString()).catch(() => []);
    return offline.length === 0 ? reason : `${reason ?? 'The run failed.'} Nodes not ONLINE: ${offline.join(', ')}.`;
  }

  private async teardown(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.cli.abort();
    await Promise.all(this.processes.map((child) => child.stop()));
    await this.channel?.close();
  }

  /** Stores the pending log lines; while the database is unavailable they wait for the next flush. */
  private async flushLogs(): Promise<void> {
    while (this.flushing) await this.flushing;
    const lines = this.pendingLogs;
    if (lines.length === 0) return;
    this.pendingLogs = [];
    this.flushing = this.deps.training.appendLogs(this.id, lines).then(() => {
      if (this.logsWaitForDatabase) this.deps.logger.info({ lines: lines.length }, 'stored the log lines that waited for the database');
      this.logsWaitForDatabase = false;
    }, (error) => {
      if (!isDatabaseUnavailableError(error)) return this.deps.logger.error({ err: error }, 'could not store log lines');
      if (!this.logsWaitForDatabase) this.deps.logger.warn({ err: error }, 'database unavailable: log lines wait until it is back');
      this.logsWaitForDatabase = true;
      this.pendingLogs = [...lines, ...this.pendingLogs].slice(-LOG_LINES_KEPT);
    }).finally(() => (this.flushing = undefined));
    await this.flushing;
  }

  /** Stores every pending log line, retrying while the database is unavailable (until the run is stopped). */
  private async flushAllLogs(): Promise<void> {
    await this.flushLogs();
    while (this.pendingLogs.length > 0 && !this.halt.signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await this.flushLogs();
    }
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

/**
 * How a guarded process ended, in words. The guard exits with 128 + N when the process it ran died
 * of signal N (as shells report it), and is itself only ended by a signal when something killed it.
 */
export function howItEnded(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `was killed by ${signal}`;
  const bySignal = code !== null && code > 128
    ? Object.entries(constants.signals).find(([, number]) => number === code - 128)?.[0]
    : undefined;
  return bySignal ? `was killed by ${bySignal}` : `exited with code ${code}`;
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
