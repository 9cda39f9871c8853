import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { retryWhileDatabaseUnavailable } from '../db/database.js';
import type { Logger } from '../logger.js';
import type { AppService } from '../modules/apps/app.service.js';
import type { RunOutcome } from '../modules/training/job.lifecycle.js';
import type { MetricPhase, MetricValues } from '../modules/training/round-metric.model.js';
import { FederationKind, TrainingJobStatus, type TrainingJob } from '../modules/training/training-job.model.js';
import { StopRuleTracker } from '../modules/training/stop-rule.js';
import { LOG_LINES_KEPT, type TrainingService } from '../modules/training/training.service.js';
import { EventChannel, type ShimEvent, type ShimQuestion } from './event-channel.js';
import type { FlowerCli } from './flower-cli.js';
import type { Federation, RunSetup } from './federations/federation.js';
import type { LocalFederations } from './federations/local-federation.js';
import { useRemoteFederation, type ProjectSuperLinks } from './federations/remote-federation.js';
import { RunOutput } from './run-output.js';
import type { JobExecution, JobLauncher } from './training-runner.js';

const SHIM = fileURLToPath(new URL('../../src/runner/python/pollen_shim.py', import.meta.url));
/** Flower's own word on the run, a fallback to the shim's start and end events. */
const STATUS_POLL_MS = 2_000;
const LOG_FLUSH_MS = 200;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;
/** Flower's strategies log this (with the counts) while too few SuperNodes are connected. */
const WAITING_FOR_NODES = /Waiting for nodes to connect: (\d+) connected \(minimum required: (\d+)\)/;

export interface FlowerRunSettings {
  dataDir: string;
  nodeConnectTimeoutSeconds: number;
  roundTimeoutSeconds: number;
}

type LaunchPhase = 'appUnpacked' | 'federationStarted' | 'submitted' | 'serverAppStarted' | 'firstRoundStarted' | 'firstTrainMetric';

export interface FlowerRunDeps {
  training: TrainingService; apps: AppService; settings: FlowerRunSettings;
  localFederations: LocalFederations; superlinks: ProjectSuperLinks; flwr: FlowerCli; logger: Logger;
}

/**
 * Starts each job as a FlowerRun under DATA_DIR/jobs/<id>/, on the federation its kind calls
 * for. Only src/runner/ knows that Flower is a set of Python processes and a CLI.
 */
export function flowerJobLauncher({ logger, ...deps }: FlowerRunDeps): JobLauncher {
  return (job) => FlowerRun.start(job, { ...deps, logger: logger.child({ jobId: job._id.toHexString() }) });
}

/**
 * One job's Flower run: the app unpacked with the shim in front of its ServerApp, a federation to
 * run on, `flwr run`, and then the run's metrics and output stored as they come, its status
 * followed (the shim's events, Flower's Control API as a fallback), and the watchdogs that stop a run which
 * waits for nodes or rounds for too long.
 */
class FlowerRun implements JobExecution {
  readonly outcome: Promise<RunOutcome>;
  private settle!: (outcome: RunOutcome) => void;
  private settled = false;
  private channel?: EventChannel;
  private federation?: Federation;
  private flowerRunId?: string;
  private readonly output: RunOutput;
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
  /** Aborted at teardown: a `flwr run` still submitting does not outlive the run. */
  private readonly cli = new AbortController();
  /** Metrics and checkpoints are stored one after another, in the order the shim sent them. */
  private recording: Promise<void> = Promise.resolve();
  /** The job's stop rule, judged round by round. */
  private readonly stopRule?: StopRuleTracker;
  /**
   * Milliseconds from the claim to each step of the launch, logged once at the first TRAIN metric
   * (bench/launch-overhead.mjs prints them as its breakdown).
   */
  private readonly launchPhases: Partial<Record<LaunchPhase, number>> = {};
  private readonly launchStartedAt = Date.now();

  private constructor(private readonly job: TrainingJob, private readonly deps: FlowerRunDeps) {
    this.outcome = new Promise((resolve) => (this.settle = resolve));
    this.output = new RunOutput((lines) => deps.training.appendLogs(this.id, lines), LOG_LINES_KEPT, deps.logger);
    if (job.stopRule) this.stopRule = new StopRuleTracker(job.stopRule, (job.parentRound ?? 0) + 1);
  }

  static async start(job: TrainingJob, deps: FlowerRunDeps): Promise<FlowerRun> {
    const flowerRun = new FlowerRun(job, deps);
    try {
      await flowerRun.launch();
    } catch (error) {
      await flowerRun.teardown();
      throw error;
    }
    return flowerRun;
  }

  private get id(): string {
    return this.job._id.toHexString();
  }

  private get dir(): string {
    return path.join(this.deps.settings.dataDir, 'jobs', this.id);
  }

  /** Where the shim writes each round's model until it is stored (and a fork's starting model); removed when the run ends. */
  private get checkpointsDir(): string {
    return path.join(this.dir, 'checkpoints');
  }

  private markLaunch(phase: LaunchPhase): void {
    if (phase in this.launchPhases) return;
    this.launchPhases[phase] = Date.now() - this.launchStartedAt;
    if (phase === 'firstTrainMetric') this.deps.logger.info({ federation: this.job.federation, launchMs: this.launchPhases }, 'launch phases');
  }

  private async launch(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
    await mkdir(this.checkpointsDir, { recursive: true, mode: 0o700 });
    this.channel = await EventChannel.open((event) => this.onShimEvent(event), (question) => this.onShimQuestion(question));
    const appDir = path.join(this.dir, 'app');
    await this.prepareApp(appDir, this.channel);
    this.markLaunch('appUnpacked');
    const setup: RunSetup = {
      job: this.job, dir: this.dir,
      onProcessDied: (label, command, code, signal) => this.onProcessDied(label, command, code, signal),
      cannotGoOn: (reason) => {
        if (!this.stopping && !this.settled) void this.failWhileRunning(`${reason} at round ${this.round}.`);
      },
      onLine: (name, line) => this.output.remember(`[${name}] ${line.replace(ANSI, '')}`),
    };
    try {
      this.federation = this.job.federation === FederationKind.REMOTE
        ? await useRemoteFederation(setup, this.deps.superlinks)
        : await this.deps.localFederations.acquire(setup, this.job.federation === FederationKind.SIMULATION);
    } catch (error) {
      throw new Error(this.output.reasonWithLog((error as Error).message));
    }
    this.markLaunch('federationStarted');

    this.flowerRunId = await this.submit(appDir);
    this.markLaunch('submitted');
    await this.deps.training.recordFlowerRun(this.id, this.flowerRunId);
    this.lastProgressAt = Date.now();
    this.timers.push(setInterval(() => void this.pollStatus(), STATUS_POLL_MS));
    this.timers.push(setInterval(() => this.checkWatchdogs(), 1_000));
    this.timers.push(setInterval(() => {
      if (!this.output.isStoring) void this.output.flush();
    }, LOG_FLUSH_MS));
  }

  /**
   * Unpacks the stored app and puts the shim in front of its ServerApp, with the run's settings in
   * pollen_shim.json (see python/pollen_shim.py): the FAB carries them, so each run on a SuperLink
   * that outlives it has its own. The channel's token then also reaches the SuperNodes with the app;
   * it only opens the event channel, which listens on this host's loopback, out of remote nodes' reach.
   */
  private async prepareApp(appDir: string, channel: EventChannel): Promise<void> {
    const app = await this.deps.apps.unpack(this.job.appId, appDir);
    await copyFile(SHIM, path.join(appDir, 'pollen_shim.py'));
    const pyproject = path.join(appDir, 'pyproject.toml');
    await writeFile(pyproject, pointServerAppAtShim(await readFile(pyproject, 'utf8')));
    await writeFile(path.join(appDir, 'pollen_shim.json'), JSON.stringify({
      target: app.components.serverapp,
      address: channel.address,
      token: channel.token,
      checkpoints_dir: this.checkpointsDir,
      round_offset: this.job.parentRound ?? 0,
      initial_arrays: await this.prepareInitialModel(),
      ask_before_round: this.stopRule !== undefined,
    }), { mode: 0o600 });
  }

  /** A fork starts from its parent's checkpoint, copied next to the run; null for a job that starts from the app's own model. */
  private async prepareInitialModel(): Promise<string | null> {
    if (!this.job.initialCheckpointId) return null;
    const file = path.join(this.checkpointsDir, 'initial.npz');
    if (!await this.deps.training.writeInitialModel(this.job, file)) {
      throw new Error(`The checkpoint of round ${this.job.parentRound} this fork starts from is no longer kept.`);
    }
    return file;
  }

  private onProcessDied(label: string, command: string, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.stopping || this.settled) return;
    const reason = `The ${label} process (${command}) ${howItEnded(code, signal)} at round ${this.round}; ` +
      'the run cannot go on without it.';
    // A crash (an exit code) usually left a traceback worth showing; a kill left nothing of its own.
    this.finish(TrainingJobStatus.FAILED, signal || (code ?? 0) > 128 ? reason : this.output.reasonWithLog(reason));
  }

  private async submit(appDir: string): Promise<string> {
    const overrides = Object.entries(JSON.parse(this.job.runConfigJson) as Record<string, unknown>)
      .flatMap(([key, value]) => ['--run-config', `${key}=${tomlValue(value)}`]);
    const { stdout } = await this.flwr(['run', appDir, this.federation!.name, ...overrides, ...this.federation!.runArgs, '--format', 'json']);
    const answer = JSON.parse(stdout) as { success?: boolean; 'run-id'?: number | string; 'error-message'?: string };
    if (!answer.success || answer['run-id'] === undefined) {
      throw new Error(`Flower refused the run: ${answer['error-message'] ?? stdout.trim()}`);
    }
    return String(answer['run-id']);
  }

  private flwr(args: string[]) {
    return this.deps.flwr.run(args, { env: this.federation!.env, cwd: this.dir, timeoutMs: 60_000, signal: this.cli.signal });
  }

  /** Flower's own word on the run, as a fallback to the shim's start and end events. */
  private async pollStatus(): Promise<void> {
    if (this.settled || this.stopping || this.polling || !this.flowerRunId || !this.federation) return;
    this.polling = true;
    let status: string | undefined;
    let details: string | undefined;
    try {
      ({ status, details } = await this.federation!.control.runState(this.flowerRunId) ?? {});
    } catch {
      return; // try again at the next poll
    } finally {
      this.polling = false;
    }
    if (status === 'running') await this.markRunning();
    if (status?.startsWith('finished:')) {
      await this.output.flush();
      if (status === 'finished:completed') this.finish(TrainingJobStatus.COMPLETED, null);
      else {
        const why = details && details !== 'N/A' ? ` ${details}` : '';
        this.finish(TrainingJobStatus.FAILED, this.output.reasonWithLog(`Flower reported the run ${status}.${why}`));
      }
    }
  }

  private onShimEvent(event: ShimEvent): void {
    const at = new Date(event.at);
    switch (event.type) {
      case 'start':
        this.markLaunch('serverAppStarted');
        void this.markRunning();
        break;
      case 'round':
        if (event.round >= 1) this.markLaunch('firstRoundStarted');
        this.lastProgressAt = Date.now();
        this.judgeRoundsBefore(event.round);
        break;
      case 'metric':
        if (event.phase === 'TRAIN') this.markLaunch('firstTrainMetric');
        this.lastProgressAt = Date.now();
        this.waitingForNodesSince = undefined;
        if (this.judgeRoundsBefore(event.round)) break;
        this.round = Math.max(this.round, event.round);
        this.stopRule?.add(event.round, event.phase as MetricPhase, jsonValues(event.values));
        this.recordMetric(event.round, event.phase as MetricPhase, jsonValues(event.values), at);
        break;
      case 'checkpoint':
        if (this.judgeRoundsBefore(event.round)) break;
        this.recordCheckpoint(event.round, event.file);
        break;
      case 'replies':
        // Built-in strategies skip the replies of ClientApps that failed, so a run whose clients all
        // raise still completes: say so in its log, where users look.
        if (event.failed > 0) {
          const reasons = [...new Set(event.errors.map((error) => error.reason))].join('; ');
          this.onServerAppLine(`[pollen] round ${event.round} ${event.phase}: ${event.failed} of ${event.sent} ClientApps failed` +
            `${reasons ? `: ${reasons}` : ''}`, at);
        }
        break;
      case 'log':
        this.onServerAppLine(event.line.replace(ANSI, ''), at);
        break;
      case 'end':
        if (event.status === 'failed' && event.error) this.output.remember(`[serverapp] ${event.error}`);
        // The ServerApp is done: ask Flower for the final word now rather than at the next poll.
        void this.pollStatus();
        break;
    }
  }

  /** A round's metrics, stored after everything the run sent before them. */
  private recordMetric(round: number, phase: MetricPhase, values: MetricValues, at: Date): void {
    this.store('round metric', { round, phase }, () => this.deps.training.recordMetric(this.job, round, phase, values, at));
  }

  /**
   * A round's model, stored once the metrics sent before it are. Only the file the shim was told
   * to write is taken: the app's own code runs beside the shim and could announce any path.
   */
  private recordCheckpoint(round: number, file: string): void {
    if (file !== path.join(this.checkpointsDir, `round-${round}.npz`)) {
      this.output.add(`[pollen] ignored a checkpoint of round ${round} announced at ${file}`, new Date());
      return;
    }
    this.store('checkpoint', { round }, () => this.deps.training.recordCheckpoint(this.job, round, file), (error) =>
      this.output.add(`[pollen] could not keep the model of round ${round}: ${error.message}`, new Date()));
  }

  /**
   * Stores what the run produced in the order it came, each after the one before, and through a
   * database outage: stored once the database is back (unless the run is stopped meanwhile).
   */
  private store(what: string, about: object, record: () => Promise<void>, onFailure?: (error: Error) => void): void {
    this.recording = this.recording
      .then(() => retryWhileDatabaseUnavailable(record, {
        signal: this.halt.signal,
        onUnavailable: (error) => this.deps.logger.warn({ err: error, ...about }, `database unavailable: will store the ${what} once it is back`),
      }))
      .catch((error: Error) => {
        onFailure?.(error);
        this.deps.logger.error({ err: error, ...about }, `could not record the ${what}`);
      });
  }

  /**
   * The shim asks before each round whether to go on: not once the stop rule fired. It asks after
   * sending everything of the rounds before, so they are all judged.
   */
  private onShimQuestion(question: ShimQuestion): object {
    const verdict = this.stopRule?.closeThrough(question.round);
    return verdict ? { continue: false, reason: verdict.reason } : { continue: true };
  }

  /**
   * Judges the rounds before `round` under the stop rule, as an event of `round` arrived; true when
   * the rule fired before it, so the event is past the run's end and dropped. A run whose loop the
   * shim does not ask from (an app driving its own) is stopped in Flower here.
   */
  private judgeRoundsBefore(round: number): boolean {
    const verdict = this.stopRule?.closeThrough(round - 1);
    if (!verdict || round <= verdict.round) return false;
    if (!this.stopping && !this.settled) {
      this.stopping = true;
      void this.stopInFlower().then(() => this.output.flush()).then(() => this.finish(TrainingJobStatus.COMPLETED, null));
    }
    return true;
  }

  private onServerAppLine(line: string, at: Date): void {
    this.output.add(line, at);
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
      await this.deps.training.lifecycle.runStarted(this.id);
    } catch (error) {
      this.running = false; // Flower's next status poll tries again
      this.deps.logger.warn({ err: error }, 'could not mark the job RUNNING');
    }
  }

  private checkWatchdogs(): void {
    if (this.settled || this.stopping) return;
    const { nodeConnectTimeoutSeconds, roundTimeoutSeconds } = this.deps.settings;
    if (this.waitingForNodesSince !== undefined && Date.now() - this.waitingForNodesSince > nodeConnectTimeoutSeconds * 1000) {
      void this.failWhileRunning(`Stopped by the watchdog: only ${this.nodesSeen} connected within ` +
        `NODE_CONNECT_TIMEOUT (${nodeConnectTimeoutSeconds} s).`);
    } else if (this.waitingForNodesSince === undefined && Date.now() - this.lastProgressAt > roundTimeoutSeconds * 1000) {
      void this.failWhileRunning(`Stopped by the watchdog: no round finished within ROUND_TIMEOUT (${roundTimeoutSeconds} s).`);
    }
  }

  /** Stops a run that cannot succeed (a watchdog, a federation that lost its nodes) and fails it with `reason`. */
  private async failWhileRunning(reason: string): Promise<void> {
    this.stopping = true;
    await this.stopInFlower();
    await this.output.flush();
    this.finish(TrainingJobStatus.FAILED, reason);
  }

  /** Cancel and shutdown: stop the run in Flower, then tear everything down. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.halt.abort();
    await this.stopInFlower();
    await this.teardown();
    await this.recording;
    await rm(this.checkpointsDir, { recursive: true, force: true });
    await this.output.flushAll(this.halt.signal);
  }

  private async stopInFlower(): Promise<void> {
    if (!this.flowerRunId) return;
    await this.federation!.control.stopRun(this.flowerRunId)
      .catch((error) => this.deps.logger.warn({ err: error }, 'Flower did not stop the run; tearing down anyway'));
  }

  private finish(status: RunOutcome['status'], reason: string | null): void {
    if (this.settled) return;
    this.settled = true;
    ({ status, reason } = this.withStopRule(status, reason));
    // No process of the run outlives it (a federation whose run completed by itself may wait for the
    // next), and every metric, checkpoint and log line is stored (waiting out a database outage if
    // need be) before the job is reported finished.
    const completedByItself = status === TrainingJobStatus.COMPLETED && !this.stopping;
    void this.teardown(completedByItself).finally(() => this.recording)
      .then(() => rm(this.checkpointsDir, { recursive: true, force: true }))
      .then(() => this.output.flushAll(this.halt.signal))
      .then(() => (status === TrainingJobStatus.FAILED ? this.federation?.explainFailure(reason) ?? reason : reason), () => reason)
      .then((final) => this.settle({ status, reason: final }));
  }

  /** A completed run as its stop rule sees it: stopped early (why), or failed for a metric it never reports. */
  private withStopRule(status: RunOutcome['status'], reason: string | null): { status: RunOutcome['status']; reason: string | null } {
    const verdict = status === TrainingJobStatus.COMPLETED ? this.stopRule?.closeThrough(Infinity) : undefined;
    if (!verdict) return { status, reason };
    if ('fail' in verdict) return { status: TrainingJobStatus.FAILED, reason: verdict.reason };
    return { status, reason: verdict.round < this.job.totalRounds ? verdict.reason : null };
  }

  private async teardown(federationReusable = false): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.cli.abort();
    await (federationReusable ? this.federation?.release() : this.federation?.stop());
    await this.channel?.close();
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
