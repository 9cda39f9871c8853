import { useMutation, useQuery, useSubscription } from '@apollo/client/react';
import { JobCharts } from '../components/JobCharts';
import { JobResults } from '../components/JobResults';
import { ErrorText, FINISHED, LogView, RoundProgress, StatusBadge } from '../components/common';
import { formatDate, formatDuration, shortId } from '../format';
import { JobLogStreamDocument, JobPageChangesDocument, JobPageDocument, StopTrainingDocument, type JobPageQuery } from '../generated/graphql';
import { useLines } from '../live/log-lines';
import { useJobMetrics } from '../live/round-metrics';
import { canEdit } from '../roles';
import { href } from '../router';

type Job = NonNullable<JobPageQuery['trainingJob']>;

export function JobPage({ jobId }: { jobId: string }) {
  const { data, error } = useQuery(JobPageDocument, { variables: { id: jobId }, fetchPolicy: 'cache-and-network' });
  const job = data?.trainingJob;
  // Each change, with the models kept so far, lands in Apollo's cache, which this page reads.
  useSubscription(JobPageChangesDocument, { variables: { jobId }, skip: !job || FINISHED.includes(job.status) });
  const finished = job ? FINISHED.includes(job.status) : undefined;
  const metrics = useJobMetrics(jobId, finished);

  if (error) return <ErrorText error={error} />;
  if (!job) return <p className="muted">Loading the run…</p>;
  return (
    <>
      <p className="crumbs">
        <a href={href({ page: 'projects' })}>Projects</a> / <a href={href({ page: 'project', projectId: job.project.id, tab: 'jobs' })}>{job.project.name}</a> /
      </p>
      <h1>Run {shortId(job.id)}: {job.app.name} {job.app.version}, {job.config.name} v{job.config.version}</h1>
      <JobState job={job} />
      <section aria-labelledby="charts-title">
        <h2 id="charts-title">Metrics by round</h2>
        <ErrorText error={metrics.error} />
        <JobCharts jobId={job.id} store={metrics.store} version={metrics.version} />
      </section>
      <section aria-labelledby="results-title">
        <h2 id="results-title">Results</h2>
        <JobResults job={job} />
      </section>
      <JobLogs job={job} />
    </>
  );
}

function JobState({ job }: { job: Job }) {
  const [cancel, cancelling] = useMutation(StopTrainingDocument, { variables: { id: job.id } });
  const finished = FINISHED.includes(job.status);
  return (
    <section className="panel job-state" aria-label="Status">
      <div role="status" aria-live="polite" className="state-line">
        <StatusBadge status={job.status} />
        {job.statusReason && <span className="reason">{job.statusReason}</span>}
      </div>
      <RoundProgress job={job} />
      <dl className="facts">
        <div><dt>Federation</dt><dd>{job.federation.toLowerCase()}, {job.clients} clients</dd></div>
        <div><dt>Config</dt><dd>{job.config.rounds} rounds, learning rate {job.config.learningRate}, batch size {job.config.batchSize}
          {job.config.modelType ? `, model ${job.config.modelType}` : ''}</dd></div>
        <div><dt>Started by</dt><dd>{job.createdBy.username}, {formatDate(job.createdAt)}</dd></div>
        {job.startedAt && <div><dt>Duration</dt><dd>{formatDuration(job.startedAt, job.finishedAt)}{finished ? '' : ' so far'}</dd></div>}
        {job.flowerRunId && <div><dt>Flower run</dt><dd>{job.flowerRunId}</dd></div>}
        {job.mlflowRun && <div><dt>MLflow</dt><dd><MlflowMirror run={job.mlflowRun} /></dd></div>}
      </dl>
      <div className="actions">
        <a className="button" href={href({ page: 'compare', jobIds: [job.id] })}>Compare with other runs</a>
        {!finished && canEdit(job.project.myRole) && (
          <button type="button" className="danger" disabled={cancelling.loading} onClick={() => void cancel().catch(() => undefined)}>
            {cancelling.loading ? 'Cancelling…' : 'Cancel run'}
          </button>
        )}
      </div>
      <ErrorText error={cancelling.error} />
    </section>
  );
}

const MIRROR_STATES = { UP_TO_DATE: 'up to date', BEHIND: 'behind', INCOMPLETE: 'incomplete' } as const;

/** Where the run is mirrored in MLflow, and whether the mirror has caught up. */
function MlflowMirror({ run }: { run: NonNullable<Job['mlflowRun']> }) {
  return (
    <>
      {run.url ? <a href={run.url} target="_blank" rel="noreferrer">run {run.runId!.slice(0, 8)}</a> : 'no run yet'}
      {' · '}{MIRROR_STATES[run.status]}{run.detail ? `: ${run.detail}` : ''}
    </>
  );
}

function JobLogs({ job }: { job: Job }) {
  const [lines, add] = useLines(job.logs);
  useSubscription(JobLogStreamDocument, {
    variables: { jobId: job.id },
    skip: FINISHED.includes(job.status),
    fetchPolicy: 'no-cache',
    onData: ({ data: { data } }) => data && add(data.trainingJobLogs),
  });
  return (
    <section aria-labelledby="logs-title">
      <h2 id="logs-title">ServerApp output</h2>
      <LogView lines={lines} label="ServerApp output" empty="No output yet." />
    </section>
  );
}
