import { useQuery } from '@apollo/client/react';
import { useCallback, useDeferredValue, useEffect, useMemo, useState } from 'react';
import { PHASE_STYLES } from '../components/JobCharts';
import { MetricChart, type ChartSeries } from '../components/MetricChart';
import { ErrorText, FINISHED, StatusBadge, useLiveJob } from '../components/common';
import { PHASE_LABELS, shortId } from '../format';
import { CompareJobDocument, PickJobsDocument, PickProjectsDocument, type CompareJobQuery, type MetricPhase } from '../generated/graphql';
import { alignSeries, PHASES, type MetricStore } from '../live/metric-store';
import { useJobMetrics } from '../live/round-metrics';
import { href, navigate } from '../router';

/** At most this many runs overlaid: each gets a colour of its own. */
export const MAX_RUNS = 10;
const RUN_COLORS = ['#2f6fae', '#d9711c', '#3c8d40', '#c23b3b', '#7b57a8', '#8c5a3c', '#d15fa8', '#5f6b73', '#a1a62c', '#1fa3b3'];

type Job = NonNullable<CompareJobQuery['trainingJob']>;
interface Run { job: Job; store: MetricStore; version: number }

export function ComparePage({ jobIds }: { jobIds: string[] }) {
  const ids = jobIds.slice(0, MAX_RUNS);
  const [runs, setRuns] = useState<ReadonlyMap<string, Run>>(new Map());
  const [phases, setPhases] = useState<ReadonlySet<MetricPhase>>(new Set(PHASES));
  const report = useCallback((id: string, run: Run) => setRuns((current) => new Map(current).set(id, run)), []);
  const select = (next: string[]) => navigate({ page: 'compare', jobIds: next });

  const loaded = ids.flatMap((id) => runs.get(id) ?? []);
  const charts = useMemo(() => overlay(loaded, phases), [loaded.map((run) => `${run.job.id}:${run.version}`).join(), phases]);

  return (
    <>
      <h1>Compare runs</h1>
      <p className="muted">Pick runs from any of your projects; each metric is drawn by round, one colour per run, one dash per phase.</p>
      <RunPicker selected={ids} onChange={select} />
      {ids.map((id) => <RunLoader key={id} jobId={id} onUpdate={report} />)}
      {ids.length > 0 && (
        <section aria-labelledby="selected-title">
          <h2 id="selected-title">Runs ({ids.length} of at most {MAX_RUNS})</h2>
          <ul className="runs">
            {ids.map((id, i) => {
              const job = runs.get(id)?.job;
              return (
                <li key={id} data-run={id}>
                  <span className="swatch" style={{ backgroundColor: RUN_COLORS[i % RUN_COLORS.length] }} aria-hidden="true" />
                  <a href={href({ page: 'job', jobId: id })}>{job ? runLabel(job) : `Run ${shortId(id)}`}</a>
                  {job && <> <StatusBadge status={job.status} /> <span className="muted">{job.project.name}</span></>}
                  <button type="button" className="link" onClick={() => select(ids.filter((kept) => kept !== id))}>
                    Remove<span className="sr-only"> run {shortId(id)}</span>
                  </button>
                </li>
              );
            })}
          </ul>
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

/** Loads one run (its job, then its metrics, live while it runs) and hands it to the page. */
function RunLoader({ jobId, onUpdate }: { jobId: string; onUpdate: (id: string, run: Run) => void }) {
  const { data, error } = useQuery(CompareJobDocument, { variables: { id: jobId } });
  const job = data?.trainingJob;
  useLiveJob(job);
  const { store, version } = useJobMetrics(jobId, job ? FINISHED.includes(job.status) : undefined);
  useEffect(() => {
    if (job) onUpdate(jobId, { job, store, version });
  }, [job, store, version, jobId, onUpdate]);
  return error ? <ErrorText error={error} /> : null;
}

function runLabel(job: Job): string {
  return `Run ${shortId(job.id)} · ${job.app.name} ${job.app.version} · ${job.config.name} v${job.config.version}`;
}

/**
 * The charts of the chosen runs: one per metric name any of them reports, one line per run and
 * phase. A fork's line would begin with its parent's points up to the fork's round (TrainingJob
 * parent and parentRound): they belong in the points taken from the run's store below.
 */
function overlay(runs: readonly Run[], phases: ReadonlySet<MetricPhase>) {
  const names = [...new Set(runs.flatMap(({ store }) => store.names()))].sort((a, b) => a.localeCompare(b));
  return names.map((name) => {
    const lines = runs.flatMap((run, i) => run.store.phasesOf(name).filter((phase) => phases.has(phase)).map((phase) => ({
      series: { label: `${shortId(run.job.id)} ${PHASE_LABELS[phase]}`, color: RUN_COLORS[i % RUN_COLORS.length]!, dash: PHASE_STYLES[phase].dash },
      points: run.store.series(name, phase),
    })));
    const series: ChartSeries[] = lines.map((line) => line.series);
    return { name, series, data: alignSeries(lines.map((line) => line.points)) };
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
