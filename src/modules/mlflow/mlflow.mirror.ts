import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../../logger.js';
import type { AppService } from '../apps/app.service.js';
import type { TrainingConfigService } from '../configs/training-config.service.js';
import type { ProjectService } from '../projects/project.service.js';
import { CheckpointReason } from '../training/checkpoint.model.js';
import type { RoundMetric, MetricValues } from '../training/round-metric.model.js';
import { isFinished, TrainingJobStatus, type TrainingJob } from '../training/training-job.model.js';
import type { JobObserver } from '../training/training.events.js';
import type { TrainingService } from '../training/training.service.js';
import type { UserService } from '../users/user.service.js';
import { MlflowError, type KeyValue, type MlflowClient, type MlflowMetric, type MlflowRunStatus } from './mlflow.client.js';
import { MlflowMirrorStatus } from './mlflow-run.model.js';
import type { MlflowService } from './mlflow.service.js';

type Update =
  | { kind: 'start'; job: TrainingJob }
  | { kind: 'metrics'; job: TrainingJob; metrics: RoundMetric[] }
  | { kind: 'end'; job: TrainingJob };

/** Updates waiting for MLflow, at most; past it the oldest metrics are dropped (and the job's mirror says so). */
export const QUEUE_LIMIT = 10_000;
// MLflow's limits per log-batch call.
const METRICS_PER_CALL = 1000;
const PARAMS_PER_CALL = 100;
// MLflow keeps at most 6,000 characters of a param and 8,000 of a tag.
const VALUE_LENGTH = 5000;
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30_000;
/** Tries for an update that failed for a reason other than MLflow's answer (a database read, say). */
const OTHER_FAILURE_TRIES = 5;
const END_STATUS: Partial<Record<TrainingJobStatus, MlflowRunStatus>> = { COMPLETED: 'FINISHED', FAILED: 'FAILED', CANCELLED: 'KILLED' };

/** Where the mirror reads what it sends: the job's project, app, config and creator, its final checkpoint. */
export interface MirrorSources {
  training: TrainingService;
  projects: ProjectService;
  apps: AppService;
  configs: TrainingConfigService;
  users: UserService;
}

/**
 * Mirrors this instance's jobs into MLflow: each job a run of the experiment named after its
 * project, with the config and run config as params, each metric as `<phase>/<name>` with the round
 * as its step, the app archive and the final checkpoint as artifacts, and the end status.
 *
 * A job never waits for MLflow: the observer calls only queue (at most QUEUE_LIMIT updates), and
 * one worker sends them in order, retrying while MLflow is slow or down. A job whose updates wait
 * is BEHIND (TrainingJob.mlflowRun, and a log line when the mirror falls behind and catches up);
 * one whose updates MLflow refused, or that the full queue dropped, is INCOMPLETE.
 */
export class MlflowMirror implements JobObserver {
  private readonly queue: Update[] = [];
  /** Jobs whose updates were dropped from the full queue since the worker last looked, and how many. */
  private readonly dropped = new Map<string, number>();
  private readonly runs = new Map<string, { runId: string; artifactUri: string }>();
  private readonly experiments = new Map<string, string>();
  /** Jobs recorded as BEHIND, to be recorded UP_TO_DATE once nothing of theirs waits. */
  private readonly behind = new Set<string>();
  private outageSince: number | undefined;
  private wake: (() => void) | undefined;
  /** Pollen is stopping: send what waits, without retrying. */
  private stopping = false;
  /** The grace to send it is over: send nothing more. */
  private abandoned = false;
  private readonly abandon: Promise<void>;
  private markAbandoned!: () => void;
  private readonly worker: Promise<void>;

  constructor(
    private readonly client: MlflowClient,
    private readonly store: MlflowService,
    private readonly sources: MirrorSources,
    private readonly logger: Logger,
  ) {
    this.abandon = new Promise((resolve) => (this.markAbandoned = resolve));
    this.worker = this.work();
  }

  statusChanged(job: TrainingJob): void {
    if (job.status === TrainingJobStatus.STARTING) this.push({ kind: 'start', job });
    else if (isFinished(job.status)) this.push({ kind: 'end', job });
  }

  metricStored(job: TrainingJob, metric: RoundMetric): void {
    this.push({ kind: 'metrics', job, metrics: [metric] });
  }

  /** Sends what waits (the ends of the jobs Pollen stopped) for up to `graceMs`; what is left is logged as lost. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.wake?.();
    const drained = await Promise.race([this.worker.then(() => true), delay(graceMs, false)]);
    this.abandoned = true;
    this.markAbandoned();
    if (!drained) this.logger.warn({ lost: this.queue.length + 1 }, 'MLflow mirror stopped with updates not sent');
  }

  private push(update: Update): void {
    if (this.queue.length >= QUEUE_LIMIT) {
      const oldest = this.queue.findIndex((queued) => queued.kind === 'metrics');
      if (oldest < 0 && update.kind === 'metrics') return this.drop(update);
      if (oldest >= 0) this.drop(this.queue.splice(oldest, 1)[0]!);
    }
    this.queue.push(update);
    this.wake?.();
  }

  private drop(update: Update): void {
    const jobId = update.job._id.toHexString();
    this.dropped.set(jobId, (this.dropped.get(jobId) ?? 0) + 1);
  }

  private async work(): Promise<void> {
    for (;;) {
      await this.recordDrops();
      if (this.abandoned) return;
      const update = this.takeNext();
      if (update) {
        await this.deliver(update);
        continue;
      }
      if (this.stopping) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /** The next update; a job's metrics that wait in a row (up to its next other update) go as one. */
  private takeNext(): Update | undefined {
    const next = this.queue.shift();
    if (next?.kind !== 'metrics') return next;
    const jobId = next.job._id;
    const metrics = [...next.metrics];
    for (let i = 0; i < this.queue.length && metrics.length < METRICS_PER_CALL; ) {
      const queued = this.queue[i]!;
      if (!queued.job._id.equals(jobId)) i += 1;
      else if (queued.kind !== 'metrics') break;
      else metrics.push(...(this.queue.splice(i, 1)[0] as typeof next).metrics);
    }
    return { ...next, metrics };
  }

  /** Sends one update until MLflow takes or refuses it, or Pollen stops. */
  private async deliver(update: Update): Promise<void> {
    const jobId = update.job._id.toHexString();
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.send(update);
        await this.caughtUp();
        return;
      } catch (error) {
        const retryable = error instanceof MlflowError ? error.retryable : attempt < OTHER_FAILURE_TRIES;
        if (!retryable || this.stopping) {
          await this.record(jobId, MlflowMirrorStatus.INCOMPLETE, `An update of the run was not mirrored: ${(error as Error).message}`);
          this.logger.warn({ err: error, jobId, update: update.kind }, 'MLflow mirror could not send an update');
          return;
        }
        await this.fellBehind(jobId, error as Error);
        await Promise.race([delay(Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (attempt - 1))), this.abandon]);
      }
    }
  }

  private async send(update: Update): Promise<void> {
    const jobId = update.job._id.toHexString();
    if (update.kind === 'start') return this.startRun(update.job);
    const run = this.runs.get(jobId) ?? (await this.store.runOf(jobId));
    if (!run?.runId) {
      // No run: the job was cancelled before it started, or its start was mirrored nowhere.
      if (update.kind === 'end') return;
      throw new MlflowError('the job has no MLflow run (its start was not mirrored)', false);
    }
    if (update.kind === 'metrics') return this.logMetrics(run.runId, update.metrics);
    return this.endRun(update.job, { runId: run.runId, artifactUri: run.artifactUri ?? '' });
  }

  /** Safe to repeat after a failure: the run is made once, params are set to the same values. */
  private async startRun(job: TrainingJob): Promise<void> {
    const jobId = job._id.toHexString();
    const { projects, apps, configs, users } = this.sources;
    const [project, app, config, creator] = await Promise.all([projects.get(job.projectId.toHexString()),
      apps.get(job.appId.toHexString()), configs.get(job.configId.toHexString()), users.get(job.createdById.toHexString())]);
    let run = this.runs.get(jobId);
    if (!run) {
      const experimentName = project?.name ?? `Pollen project ${job.projectId.toHexString()}`;
      const experimentId = this.experiments.get(experimentName) ?? (await this.client.experimentId(experimentName));
      this.experiments.set(experimentName, experimentId);
      const runName = [app && `${app.name} ${app.version}`, config && `${config.name} v${config.version}`, jobId.slice(-6)].filter(Boolean).join(' · ');
      const tags = keyValues({
        'mlflow.user': creator?.username, 'pollen.job_id': jobId, 'pollen.project_id': job.projectId.toHexString(), 'pollen.project': project?.name,
        'pollen.app_name': app?.name, 'pollen.app_version': app?.version, 'pollen.app_sha256': app?.sha256, 'pollen.federation': job.federation,
        'pollen.config': config && `${config.name} v${config.version}`, 'pollen.parent_job_id': job.parentId?.toHexString(),
      });
      const created = await this.client.createRun(experimentId, runName, (job.startedAt ?? new Date()).getTime(), tags);
      run = { runId: created.runId, artifactUri: created.artifactUri };
      this.runs.set(jobId, run);
      await this.store.recordRun(jobId, created);
    }
    const runConfig = JSON.parse(job.runConfigJson) as MetricValues;
    const params = keyValues({
      'config.name': config?.name, 'config.version': config?.version, rounds: job.totalRounds, clients: job.clients,
      learning_rate: config?.learningRate, batch_size: config?.batchSize, model_type: config?.modelType, federation: job.federation,
      keep_checkpoints: job.keepCheckpoints, stop_rule: job.stopRule && JSON.stringify(job.stopRule), parent_round: job.parentRound,
      ...Object.fromEntries(Object.entries(runConfig).map(([key, value]) => [`run_config.${key}`, value])),
    });
    for (let i = 0; i < params.length; i += PARAMS_PER_CALL) await this.client.logBatch(run.runId, { params: params.slice(i, i + PARAMS_PER_CALL) });
    if (app?.archiveFileId) {
      await this.client.uploadArtifact(run.artifactUri, `app/${fileName(app.name)}-${fileName(app.version)}.zip`, () => apps.openArchive(app));
    }
  }

  private async logMetrics(runId: string, metrics: readonly RoundMetric[]): Promise<void> {
    const points: MlflowMetric[] = metrics.flatMap(({ round, phase, valuesJson, recordedAt }) =>
      Object.entries(JSON.parse(valuesJson) as MetricValues).flatMap(([name, value]) => (typeof value === 'number' && Number.isFinite(value)
        ? [{ key: `${phase}/${metricName(name)}`, value, timestamp: new Date(recordedAt).getTime(), step: round }] : [])));
    for (let i = 0; i < points.length; i += METRICS_PER_CALL) await this.client.logBatch(runId, { metrics: points.slice(i, i + METRICS_PER_CALL) });
  }

  private async endRun(job: TrainingJob, run: { runId: string; artifactUri: string }): Promise<void> {
    const kept = (await this.sources.training.checkpointsOf([job])).get(job._id.toHexString()) ?? [];
    const final = kept.find((checkpoint) => checkpoint.reasons.includes(CheckpointReason.FINAL));
    if (final) {
      await this.client.uploadArtifact(run.artifactUri, `model/final-round-${final.round}.npz`,
        () => this.sources.training.openCheckpoint(final));
    }
    await this.client.logBatch(run.runId, { tags: keyValues({ 'pollen.status': job.status, 'pollen.status_reason': job.statusReason }) });
    await this.client.endRun(run.runId, END_STATUS[job.status] ?? 'FAILED', (job.finishedAt ?? new Date()).getTime());
    this.runs.delete(job._id.toHexString());
  }

  private async fellBehind(jobId: string, error: Error): Promise<void> {
    const waiting = this.queue.length + 1;
    if (this.outageSince === undefined) {
      this.outageSince = Date.now();
      this.logger.warn({ trackingUri: this.client.trackingUri, waiting, err: error.message }, 'MLflow mirror fell behind: updates wait and are retried');
    }
    const detail = `${error.message}. ${waiting} update${waiting === 1 ? '' : 's'} wait in Pollen and are retried.`;
    for (const id of new Set([jobId, ...this.queue.map((update) => update.job._id.toHexString())])) {
      if (this.behind.has(id)) continue;
      this.behind.add(id);
      await this.record(id, MlflowMirrorStatus.BEHIND, detail);
    }
  }

  private async caughtUp(): Promise<void> {
    if (this.outageSince !== undefined) {
      this.logger.info({ trackingUri: this.client.trackingUri, seconds: Math.round((Date.now() - this.outageSince) / 1000) }, 'MLflow mirror caught up');
      this.outageSince = undefined;
    }
    const waiting = new Set(this.queue.map((update) => update.job._id.toHexString()));
    for (const id of [...this.behind].filter((one) => !waiting.has(one))) {
      this.behind.delete(id);
      await this.record(id, MlflowMirrorStatus.UP_TO_DATE, null);
    }
  }

  private async recordDrops(): Promise<void> {
    for (const [jobId, count] of [...this.dropped]) {
      this.dropped.delete(jobId);
      this.logger.warn({ jobId, dropped: count }, 'MLflow mirror queue full: updates dropped');
      await this.record(jobId, MlflowMirrorStatus.INCOMPLETE,
        `${count} update${count === 1 ? ' was' : 's were'} dropped: more than ${QUEUE_LIMIT} waited for MLflow.`);
    }
  }

  /** Records how far a job's mirror is; the database being down only costs the record. */
  private async record(jobId: string, status: MlflowMirrorStatus, detail: string | null): Promise<void> {
    await this.store.recordStatus(jobId, status, detail)
      .catch((error: unknown) => this.logger.warn({ err: error, jobId, status }, 'could not record the MLflow mirror status'));
  }
}

/** Tags and params as MLflow takes them: strings, empty ones left out, long ones cut. */
function keyValues(entries: Record<string, string | number | boolean | null | undefined>): KeyValue[] {
  return Object.entries(entries).flatMap(([key, value]) =>
    (value === null || value === undefined || value === '' ? [] : [{ key, value: String(value).slice(0, VALUE_LENGTH) }]));
}

/** MLflow's metric names allow letters, digits, _ - . / and spaces. */
function metricName(name: string): string {
  return name.replace(/[^\w\-. /]/g, '_');
}

function fileName(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]/g, '_');
}
