import { closable } from '../../pubsub/pubsub.js';
import type { Services } from '../../app/services.js';
import type { JobLogLine } from './job-log-line.model.js';
import type { RoundMetric } from './round-metric.model.js';
import { isFinished, type TrainingJob } from './training-job.model.js';
import { jobEvents, type JobEvent } from './training.events.js';

// Every stream subscribes before it reads, so nothing published in between is missed. Each
// accepts only the events it uses: a job's topic also carries every log line and job update, and
// thousands of subscribers may follow one job.

const isEnd = (event: JobEvent) => event.type === 'updated' && isFinished(event.job.status);

/** The job as it is now, then every change; ends with the job. */
export function jobUpdateStream(services: Services, job: TrainingJob): AsyncIterableIterator<TrainingJob> {
  const events = services.pubsub.subscribe(jobEvents(job._id.toHexString()), (event) => event.type === 'updated');
  return closable(events, (async function* () {
    await events.ready;
    const current = (await services.training.get(job._id.toHexString())) ?? job;
    yield current;
    if (isFinished(current.status)) return;
    for await (const event of events) {
      // Changes older than the state already sent were published before it was read.
      if (event.type !== 'updated' || event.job.updatedAt < current.updatedAt) continue;
      yield event.job;
      if (isFinished(event.job.status)) return;
    }
  })());
}

/** Stored metrics from `fromRound` on (none without it), then live ones; each (round, phase) once. */
export function roundMetricStream(services: Services, job: TrainingJob, fromRound?: number | null): AsyncIterableIterator<RoundMetric> {
  const events = services.pubsub.subscribe(jobEvents(job._id.toHexString()), (event) => event.type === 'metric' || isEnd(event));
  const sent = new Set<string>();
  const firstTime = (metric: RoundMetric) => {
    const key = `${metric.round}:${metric.phase}`;
    return !sent.has(key) && Boolean(sent.add(key));
  };
  return closable(events, (async function* () {
    await events.ready;
    const current = (await services.training.get(job._id.toHexString())) ?? job;
    if (fromRound !== undefined && fromRound !== null) {
      for (const metric of await services.training.metrics(job._id, fromRound)) {
        if (firstTime(metric)) yield metric;
      }
    }
    if (isFinished(current.status)) return;
    for await (const event of events) {
      if (event.type === 'metric' && (fromRound === undefined || fromRound === null || event.metric.round >= fromRound) &&
        firstTime(event.metric)) {
        yield event.metric;
      }
      if (isEnd(event)) return;
    }
  })());
}

/** ServerApp output from now on; ends with the job. */
export function jobLogStream(services: Services, job: TrainingJob): AsyncIterableIterator<JobLogLine> {
  const events = services.pubsub.subscribe(jobEvents(job._id.toHexString()), (event) => event.type === 'log' || isEnd(event));
  return closable(events, (async function* () {
    await events.ready;
    const current = (await services.training.get(job._id.toHexString())) ?? job;
    if (isFinished(current.status)) return;
    for await (const event of events) {
      if (event.type === 'log') yield event.line;
      if (isEnd(event)) return;
    }
  })());
}
