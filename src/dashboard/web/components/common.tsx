import { useSubscription } from '@apollo/client/react';
import { useEffect, useRef, type ReactNode } from 'react';
import { describeError } from '../errors';
import { formatValue, PHASE_LABELS } from '../format';
import { JobChangesDocument, type JobRowFragment, type TrainingJobStatus } from '../generated/graphql';

export const FINISHED: readonly TrainingJobStatus[] = ['COMPLETED', 'FAILED', 'CANCELLED'];
const TIME = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

export function StatusBadge({ status }: { status: string }) {
  return <span className={`status status-${status.toLowerCase()}`}>{status.toLowerCase()}</span>;
}

export function RoundProgress({ job }: { job: Pick<JobRowFragment, 'currentRound' | 'totalRounds'> }) {
  const done = Math.max(job.currentRound ?? 0, 0);
  return (
    <span className="progress">
      <progress max={job.totalRounds} value={done} aria-label={`Round ${done} of ${job.totalRounds}`} />
      <span aria-hidden="true">{done}/{job.totalRounds}</span>
    </span>
  );
}

export function LatestMetrics({ metrics }: { metrics: JobRowFragment['latestMetrics'] }) {
  if (metrics.length === 0) return <span className="muted">none yet</span>;
  return (
    <dl className="latest">
      {metrics.map(({ phase, round, values }) => (
        <div key={phase}>
          <dt>{PHASE_LABELS[phase]} · round {round}</dt>
          <dd>
            {Object.entries(values).filter(([, v]) => typeof v === 'number').map(([name, v]) => `${name} ${formatValue(v as number)}`).join(', ')}
          </dd>
        </div>
      ))}
    </dl>
  );
}

/** An operation's failure, read out as it appears. */
export function ErrorText({ error }: { error: unknown }) {
  if (!error) return null;
  return <p role="alert" className="error">{describeError(error)}</p>;
}

/**
 * Keeps a job's row up to date while it has not finished: trainingJobUpdated writes each change
 * into Apollo's cache, where every view of the job reads it.
 */
export function useLiveJob(job: Pick<JobRowFragment, 'id' | 'status'> | undefined | null): void {
  useSubscription(JobChangesDocument, { variables: { jobId: job?.id ?? '' }, skip: !job || FINISHED.includes(job.status) });
}

/** Lines of output, kept scrolled to the newest unless the reader scrolled up. */
export function LogView({ lines, label, empty }: { lines: ReadonlyArray<{ at: string; line: string }>; label: string; empty: ReactNode }) {
  const element = useRef<HTMLPreElement>(null);
  const following = useRef(true);
  useEffect(() => {
    const pre = element.current;
    if (pre && following.current) pre.scrollTop = pre.scrollHeight;
  }, [lines]);
  if (lines.length === 0) return <p className="muted">{empty}</p>;
  return (
    <pre
      ref={element}
      className="log"
      role="log"
      aria-label={label}
      tabIndex={0}
      onScroll={(event) => {
        const pre = event.currentTarget;
        following.current = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      }}
    >
      {lines.map(({ at, line }) => `${TIME.format(new Date(at))}  ${line}`).join('\n')}
    </pre>
  );
}
