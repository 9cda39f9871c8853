import { useQuery } from '@apollo/client/react';
import { useDeferredValue, useEffect, useMemo, useRef, useState } from 'react';
import { PHASE_STYLES } from '../components/JobCharts';
import { MetricChart, type ChartSeries } from '../components/MetricChart';
import { ErrorText, FINISHED, StatusBadge, useLiveJob } from '../components/common';
import { useConnection } from '../connection';
import { PHASE_LABELS, shortId } from '../format';
import { CompareRunsDocument, PickJobsDocument, PickProjectsDocument, type CompareRunsQuery, type MetricPhase } from '../generated/graphql';
import { alignSeries, MetricStore, PHASES, type AlignedSeries } from '../live/metric-store';
import { followRoundMetrics, oncePerFrame } from '../live/round-metrics';
import { href, navigate } from '../router';

/** At most this many runs overlaid: each gets a colour of its own. */
export const MAX_RUNS = 10;
const RUN_COLORS = ['#2f6fae', '#d9711c', '#3c8d40', '#c23b3b', '#7b57a8', '#8c5a3c', '#d15fa8', '#5f6b73', '#a1a62c', '#1fa3b3'];

type Job = NonNullable<CompareRunsQuery['trainingJobs'][number]>;
/** A run as the charts draw it: its own metrics, and for a fork its parent's up to the round it forked at. */
interface Run { job: Job; store: MetricStore; parent?: MetricStore }

export function ComparePage({ jobIds }: { jobIds: string[] }) {
  const ids = jobIds.slice(0, MAX_RUNS);
  const select = (next: string[]) => navigate({ page: 'compare', jobIds: next });
  // One query for every run's state and stored metrics; runs still going are followed below.
  const { data, error } = useQuery(CompareRunsDocument, { variables: { ids }, skip: ids.length === 0, fetchPolicy: 'network-only' });
  const [version, setVersion] = useState(0);
  const changed = useMemo(() => oncePerFrame(() => setVersion((n) => n + 1)), []);
  // One store per job for as long as the page shows it: new answers (a run's state changed) add to it.
  const stores = useRef(new Map<string, MetricStore>());
  const runs = useMemo(() => (data?.trainingJobs ?? []).flatMap((job): Run[] => {
    if (!job) return [];
    const run = { job, store: storeOf(stores.current, job.id), parent: job.parent ? storeOf(stores.current, job.parent.id) : undefined };
    run.store.addSeries(job.metricSeries);
    if (job.parent) run.parent!.addSeries(job.parent.metricSeries);
    return [run];
  }), [data]);
  const [phases, setPhases] = useState<ReadonlySet<MetricPhase>>(new Set(PHASES));
  const overlays = useMemo(() => overlay(runs), [runs, version]);
  // A phase switched off hides its lines (the data stays as it is): no chart is drawn anew for it.
  const charts = useMemo(() => overlays.flatMap(({ lines, ...chart }) => {
    const series = lines.map(({ phase, ...line }) => ({ ...line, show: phases.has(phase) }));
    return series.some((line) => line.show) ? [{ ...chart, series }] : [];
  }), [overlays, phases]);
  const missing = data ? ids.filter((id) => !runs.some((run) => run.job.id === id)) : [];

  return (
    <>
      <h1>Compare runs</h1>
      <p className="muted">
        Pick runs from any of your projects; each metric is drawn by round, one colour per run, one dash per phase. A fork's line
        starts on its parent's, at the round it was forked from.
      </p>
      <RunPicker selected={ids} onChange={select} />
      <ErrorText error={error} />
      {runs.map((run) => !FINISHED.includes(run.job.status) && <LiveRun key={run.job.id} run={run} onChange={changed} />)}
      {ids.length > 0 && (
        <section aria-labelledby="selected-title">
          <h2 id="selected-title">Runs ({ids.length} of at most {MAX_RUNS})</h2>
          <ul className="runs">
            {runs.map(({ job }, i) => (
              <li key={job.id} data-run={job.id}>
                <span className="swatch" style={{ backgroundColor: RUN_COLORS[i % RUN_COLORS.length] }} aria-hidden="true" />
                <a href={href({ page: 'job', jobId: job.id })}>{runLabel(job)}</a> <StatusBadge status={job.status} />
                <span className="muted">{job.project.name}{job.parent ? ` · fork of ${shortId(job.parent.id)} at round ${job.parentRound}` : ''}</span>
                <button type="button" className="link" onClick={() => select(ids.filter((kept) => kept !== job.id))}>
                  Remove<span className="sr-only"> run {shortId(job.id)}</span>
                </button>
              </li>
            ))}
          </ul>
          {missing.length > 0 && <p className="hint">Not shown (gone, or not yours to see): {missing.map(shortId).join(', ')}.</p>}
          <fieldset className="phases">
            <legend>Phases</legend>
            {PHASES.map((phase) => (
              <label key={phase} className="inline">
                <input type="checkbox" checked={phases.has(phase)} onChange={() => setPhases((current) => {
                  const next = new Set(current);
                  if (!next.delete(phase)) next.add(phase);
                  return next;
                })} />
                {PHASE_LABELS[phase]}
              </label>
            ))}
          </fieldset>
        </section>
      )}
      {charts.length > 0 && (
        <div className="charts">
          {charts.map((chart) => <MetricChart key={chart.name} syncKey="compare" {...chart} />)}
        </div>
      )}
    </>
  );
}

/** A run that has not finished: its state and its new rounds as they come. */
function LiveRun({ run: { job, store }, onChange }: { run: Run; onChange: () => void }) {
  const connection = useConnection();
  useLiveJob(job);
  useEffect(() => followRoundMetrics(connection, job.id, store, { change: onChange, error: () => undefined }), [connection, job.id, store, onChange]);
  return null;
}

function storeOf(stores: Map<string, MetricStore>, jobId: string): MetricStore {
  let store = stores.get(jobId);
  if (!store) stores.set(jobId, (store = new MetricStore()));
  return store;
}

function runLabel(job: Job): string {
  return `Run ${shortId(job.id)} · ${job.app.name} ${job.app.version} · ${job.config.name} v${job.config.version}`;
}

/** The charts of the chosen runs: one per metric name any of them reports, one line per run and phase. */
function overlay(runs: readonly Run[]): Array<{ name: string; lines: Array<ChartSeries & { phase: MetricPhase }>; data: AlignedSeries }> {
  const names = [...new Set(runs.flatMap(({ store }) => store.names()))].sort((a, b) => a.localeCompare(b));
  return names.map((name) => {
    const drawn = runs.flatMap(({ job, store, parent }, i) => store.phasesOf(name).map((phase) => ({
      line: { phase, label: `${shortId(job.id)} ${PHASE_LABELS[phase]}`, color: RUN_COLORS[i % RUN_COLORS.length]!, dash: PHASE_STYLES[phase].dash },
      points: [...(parent?.series(name, phase).filter(([round]) => round <= job.parentRound!) ?? []), ...store.series(name, phase)],
    })));
    return { name, lines: drawn.map(({ line }) => line), data: alignSeries(drawn.map(({ points }) => points)) };
  });
}

/** Choose runs: a project (any you belong to), then its runs; the choice lives in the URL. */
function RunPicker({ selected, onChange }: { selected: string[]; onChange: (ids: string[]) => void }) {
  const [search, setSearch] = useState('');
  const deferredSearch = useDeferredValue(search.trim());
  const [projectId, setProjectId] = useState<string>();
  const projects = useQuery(PickProjectsDocument, { variables: { search: deferredSearch || null } });
  const jobs = useQuery(PickJobsDocument, { variables: { projectId: projectId ?? '' }, skip: !projectId, fetchPolicy: 'cache-and-network' });
  const projectList = projects.data?.projects.edges.map(({ node }) => node) ?? [];
  const full = selected.length >= MAX_RUNS;

  return (
    <section className="panel picker" aria-labelledby="picker-title">
      <h2 id="picker-title">Add runs</h2>
      <div className="row-form">
        <label>Find a project<input type="search" value={search} onChange={(event) => setSearch(event.target.value)} /></label>
        <label>Project
          <select value={projectId ?? ''} onChange={(event) => setProjectId(event.target.value || undefined)}>
            <option value="">Choose a project</option>
            {projectList.map((project) => <option key={project.id} value={project.id}>{project.name}</option>)}
          </select>
        </label>
      </div>
      <ErrorText error={projects.error ?? jobs.error} />
      {full && <p className="hint">{MAX_RUNS} runs are chosen: remove one to add another.</p>}
      {jobs.data?.project && (
        <ul className="pick-list">
          {jobs.data.project.trainingJobs.edges.map(({ node: job }) => {
            const checked = selected.includes(job.id);
            return (
              <li key={job.id}>
                <label className="inline">
                  <input type="checkbox" checked={checked} disabled={!checked && full}
                    onChange={() => onChange(checked ? selected.filter((id) => id !== job.id) : [...selected, job.id])} />
                  Run {shortId(job.id)} · {job.app.name} {job.app.version} · {job.config.name} v{job.config.version}
                  {job.parentRound !== null && job.parentRound !== undefined ? ` · fork at round ${job.parentRound}` : ''}
                </label>{' '}
                <StatusBadge status={job.status} />
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}
