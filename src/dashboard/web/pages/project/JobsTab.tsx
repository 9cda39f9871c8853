import { useMutation, useQuery } from '@apollo/client/react';
import { useState, type FormEvent } from 'react';
import { ErrorText, LatestMetrics, RoundProgress, StatusBadge, useLiveJob } from '../../components/common';
import { FederationSelect, RunOptionFields, runOptionsFrom } from '../../components/RunOptions';
import { fieldsOf } from '../../forms';
import { formatDate, formatDuration, shortId } from '../../format';
import {
  LaunchTrainingDocument, ProjectJobsDocument, type FederationKind, type JobRowFragment, type ProjectJobsQuery,
} from '../../generated/graphql';
import { canEdit } from '../../roles';
import { href, navigate } from '../../router';


export function JobsTab({ projectId }: { projectId: string }) {
  const { data, error } = useQuery(ProjectJobsDocument, { variables: { id: projectId }, fetchPolicy: 'cache-and-network' });
  const [selected, setSelected] = useState<string[]>([]);
  const project = data?.project;
  if (error) return <ErrorText error={error} />;
  if (!project) return <p className="muted">Loading runs…</p>;
  const jobs = project.trainingJobs.edges.map(({ node }) => node);
  const toggle = (id: string) => setSelected((ids) => (ids.includes(id) ? ids.filter((kept) => kept !== id) : [...ids, id]));

  return (
    <>
      {canEdit(project.myRole) && <StartRun project={project} />}
      <div className="section-head">
        <h2>Runs ({project.trainingJobs.totalCount})</h2>
        <a className={`button${selected.length < 2 ? ' disabled' : ''}`} aria-disabled={selected.length < 2}
          href={selected.length < 2 ? undefined : href({ page: 'compare', jobIds: selected })}>
          Compare {selected.length > 0 ? selected.length : ''} selected
        </a>
      </div>
      {jobs.length === 0 ? <p className="muted">No runs yet.</p> : (
        <div className="table-scroll">
          <table className="jobs">
            <thead>
              <tr>
                <th scope="col">Compare</th><th scope="col">Run</th><th scope="col">Status</th><th scope="col">Rounds</th>
                <th scope="col">Latest metrics</th><th scope="col">Duration</th><th scope="col">Federation</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((job) => <JobRow key={job.id} job={job} selected={selected.includes(job.id)} onToggle={() => toggle(job.id)} />)}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function JobRow({ job, selected, onToggle }: { job: JobRowFragment; selected: boolean; onToggle: () => void }) {
  useLiveJob(job);
  const label = `${job.app.name} ${job.app.version}, ${job.config.name} v${job.config.version}`;
  return (
    <tr data-job={job.id}>
      <td><input type="checkbox" checked={selected} onChange={onToggle} aria-label={`Compare run ${shortId(job.id)}`} /></td>
      <th scope="row">
        <a href={href({ page: 'job', jobId: job.id })}>Run {shortId(job.id)}</a>
        <div className="muted small">{label} · {formatDate(job.createdAt)}{job.parentRound !== null ? ` · fork at round ${job.parentRound}` : ''}</div>
      </th>
      <td><StatusBadge status={job.status} />{job.statusReason && <div className="muted small">{job.statusReason}</div>}</td>
      <td><RoundProgress job={job} /></td>
      <td><LatestMetrics metrics={job.latestMetrics} /></td>
      <td>{job.startedAt ? formatDuration(job.startedAt, job.finishedAt) : '–'}</td>
      <td>{job.federation.toLowerCase()} · {job.clients} clients</td>
    </tr>
  );
}

function StartRun({ project }: { project: NonNullable<ProjectJobsQuery['project']> }) {
  const [start, { loading, error }] = useMutation(LaunchTrainingDocument);
  const apps = project.apps.edges.map(({ node }) => node);
  const configs = project.configs.edges.map(({ node }) => node);
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const fields = fieldsOf(event.currentTarget);
    const input = {
      appId: fields.text('appId'), configId: fields.text('configId'), federation: fields.text('federation') as FederationKind,
      ...runOptionsFrom(fields),
    };
    const { data } = await start({ variables: { input } }).catch(() => ({ data: undefined }));
    if (data) navigate({ page: 'job', jobId: data.startTraining.id });
  }
  if (apps.length === 0 || configs.length === 0) {
    return (
      <p className="panel muted">
        To start a run, the project needs an <a href={href({ page: 'project', projectId: project.id, tab: 'apps' })}>app</a> and
        a <a href={href({ page: 'project', projectId: project.id, tab: 'configs' })}>config</a>.
      </p>
    );
  }
  return (
    <form className="panel row-form" onSubmit={submit} aria-labelledby="start-run-title">
      <h2 id="start-run-title">Start a run</h2>
      <label>App
        <select name="appId" required>
          {apps.map((app) => <option key={app.id} value={app.id}>{app.name} {app.version}</option>)}
        </select>
      </label>
      <label>Config
        <select name="configId" required>
          {configs.map((config) => (
            <option key={config.id} value={config.id}>{config.name} v{config.version} ({config.rounds} rounds, {config.clients} clients)</option>
          ))}
        </select>
      </label>
      <FederationSelect />
      <RunOptionFields />
      <button type="submit" disabled={loading}>Start run</button>
      <ErrorText error={error} />
    </form>
  );
}
