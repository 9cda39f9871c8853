import { useEffect, useMemo, useRef, useState } from 'react';
import { JobMetricsDocument, JobMetricStreamDocument } from '../generated/graphql';
import type { Connection } from '../apollo';
import { useConnection } from '../connection';
import { MetricStore } from './metric-store';

/**
 * Follows a job's round metrics into `store`: `roundMetrics(fromRound)` replays what is stored from
 * that round on, then streams new ones. graphql-ws re-sends a subscription with the variables it
 * started with when its socket comes back, so after a lost socket this starts the stream again
 * instead, from the newest round the store holds: nothing in between is missed, and what arrives
 * twice the store drops. Returns the function that stops following.
 */
export function followRoundMetrics(
  { client, sockets }: Connection,
  jobId: string,
  store: MetricStore,
  on: { change(): void; error(error: unknown): void },
): () => void {
  let stream: { unsubscribe(): void } | undefined;
  let interrupted = false;
  const start = () => {
    stream?.unsubscribe();
    stream = client.subscribe({ query: JobMetricStreamDocument, variables: { jobId, fromRound: store.resumeRound() }, fetchPolicy: 'no-cache' })
      .subscribe({
        next: ({ data, error }) => {
          if (error) on.error(error);
          else if (data && store.add([data.roundMetrics])) on.change();
        },
        error: on.error,
        // The job ended: nothing more will come.
        complete: () => stopWatching(),
      });
  };
  const stopWatching = [
    sockets.on('closed', () => {
      interrupted = true;
    }),
    // Runs as the new socket is acknowledged, before graphql-ws re-sends the old subscription.
    sockets.on('connected', () => {
      if (!interrupted) return;
      interrupted = false;
      start();
    }),
  ].reduce((a, b) => () => {
    a();
    b();
  });
  start();
  return () => {
    stopWatching();
    stream?.unsubscribe();
  };
}

/**
 * A job's metrics for a view: a finished job's in one query (metricSeries), a running one's through
 * followRoundMetrics (its replay from round 0 brings what is stored, then each round as it ends).
 * Which of the two is decided once, by the first known `finished` (undefined: not known yet).
 * Views redraw at most once per frame, however fast a replay delivers.
 */
export function useJobMetrics(jobId: string, finished: boolean | undefined): { store: MetricStore; version: number; error?: unknown } {
  const connection = useConnection();
  const [store] = useState(() => new MetricStore());
  const [version, setVersion] = useState(0);
  const [error, setError] = useState<unknown>();
  const mode = useRef<'query' | 'follow'>(undefined);
  if (mode.current === undefined && finished !== undefined) mode.current = finished ? 'query' : 'follow';
  const changed = useMemo(() => oncePerFrame(() => setVersion(store.version)), [store]);

  useEffect(() => {
    if (mode.current !== 'query') return undefined;
    let current = true;
    connection.client.query({ query: JobMetricsDocument, variables: { id: jobId }, fetchPolicy: 'no-cache' }).then(({ data }) => {
      if (!current || !data?.trainingJob) return;
      performance.mark('pollen:metrics-received', { detail: { jobId } });
      if (store.addSeries(data.trainingJob.metricSeries)) changed();
    }, setError);
    return () => {
      current = false;
    };
  }, [connection, jobId, mode.current, store, changed]);

  useEffect(() => {
    if (mode.current !== 'follow') return undefined;
    return followRoundMetrics(connection, jobId, store, { change: changed, error: setError });
  }, [connection, jobId, mode.current, store, changed]);

  return { store, version, error };
}

/** `run` at most once per animation frame, however often it is asked for. */
export function oncePerFrame(run: () => void): () => void {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      run();
    });
  };
}
