import { Types } from 'mongoose';
import { MlflowMirrorStatus, MlflowRunModel, type MlflowRun } from './mlflow-run.model.js';

/** What Pollen knows of each job's MLflow run: the only code that touches mlflow_runs. */
export class MlflowService {
  /** The tracking server's URL, or undefined when jobs are not mirrored. */
  constructor(readonly trackingUri: string | undefined) {}

  /** Each job's mirror, by job id; jobs without one are left out. */
  async runsOf(jobIds: readonly Types.ObjectId[]): Promise<Map<string, MlflowRun>> {
    if (!this.trackingUri) return new Map();
    const runs = await MlflowRunModel.find({ jobId: { $in: jobIds } }).lean<MlflowRun[]>().exec();
    return new Map(runs.map((run) => [run.jobId.toHexString(), run]));
  }

  /** Where a person sees the run in MLflow's web UI, once MLflow made it. */
  runUrl(run: MlflowRun): string | null {
    if (!this.trackingUri || !run.runId || !run.experimentId) return null;
    return `${this.trackingUri}/#/experiments/${encodeURIComponent(run.experimentId)}/runs/${encodeURIComponent(run.runId)}`;
  }

  /** The run MLflow made for a job. */
  async recordRun(jobId: string, run: { runId: string; experimentId: string; artifactUri: string }): Promise<void> {
    await MlflowRunModel.updateOne({ jobId: new Types.ObjectId(jobId) }, { $set: run, $setOnInsert: { status: MlflowMirrorStatus.UP_TO_DATE } },
      { upsert: true }).exec();
  }

  /**
   * How far the job's mirror is; an INCOMPLETE one stays so (what was lost is lost). One mirror
   * writes a job's record at a time, so reading first does not race.
   */
  async recordStatus(jobId: string, status: MlflowMirrorStatus, detail: string | null): Promise<void> {
    const current = await this.runOf(jobId);
    if (current?.status === MlflowMirrorStatus.INCOMPLETE && status !== MlflowMirrorStatus.INCOMPLETE) return;
    await MlflowRunModel.updateOne({ jobId: new Types.ObjectId(jobId) }, { $set: { status, detail } }, { upsert: true }).exec();
  }

  /** The run a job has in MLflow, if MLflow made one. */
  runOf(jobId: string): Promise<MlflowRun | null> {
    return MlflowRunModel.findOne({ jobId: new Types.ObjectId(jobId) }).lean<MlflowRun>().exec();
  }
}
