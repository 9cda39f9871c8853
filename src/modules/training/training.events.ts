import type { JobLogLine } from './job-log-line.model.js';
import type { RoundMetric } from './round-metric.model.js';
import type { TrainingJob } from './training-job.model.js';
import { topic } from '../../pubsub/pubsub.js';

/** Everything that happens to one job, in the order it happened. */
export type JobEvent =
  | { type: 'updated'; job: TrainingJob }
  | { type: 'metric'; metric: RoundMetric }
  | { type: 'log'; line: JobLogLine };

/**
 * Told of each status change and each metric stored, on the instance where it happened: for
 * mirrors of jobs into other systems (MLflow). Must return at once and never throw: jobs do not
 * wait for their mirrors.
 */
export interface JobObserver {
  statusChanged(job: TrainingJob): void;
  metricStored(job: TrainingJob, metric: RoundMetric): void;
}

export const jobEvents = (jobId: string) => topic<JobEvent>(`training-job.${jobId}`);
/** Tells runners that there is work: a job was queued, or one should be cancelled. */
export const runnerWakeUps = topic<{ cancelJobId?: string }>('training-runner.wake-up');
