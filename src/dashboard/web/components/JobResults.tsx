import { useMutation, useQuery } from '@apollo/client/react';
import { useState, type FormEvent } from 'react';
import { saveLink } from '../apollo';
import { useConnection } from '../connection';
import { fieldsOf } from '../forms';
import { formatBytes, shortId } from '../format';
import {
  CheckpointLinksDocument, ForkChoicesDocument, ForkRunDocument, type CheckpointFormat, type FederationKind, type JobPageQuery,
} from '../generated/graphql';
import { canEdit } from '../roles';
import { href, navigate } from '../router';
import { Downloads } from './Downloads';
import { ErrorText, FINISHED, StatusBadge } from './common';
import { describeStopRule, FederationSelect, RunOptionFields, runOptionsFrom } from './RunOptions';

type Job = NonNullable<JobPageQuery['trainingJob']>;

const FORMATS: ReadonlyArray<{ format: CheckpointFormat; label: string; extension: string }> = [
  { format: 'NPZ', label: 'npz', extension: 'npz' },
  { format: 'SAFETENSORS', label: 'safetensors', extension: 'safetensors' },
];

/** What a run leaves: its lineage, its stop rule, its kept models (download, fork) and its metrics. */
export function JobResults({ job }: { job: Job }) {
  const final = job.checkpoints.find((checkpoint) => checkpoint.reasons.includes('FINAL'));
  return (
    <>
      {(job.parent || job.forks.length > 0 || job.stopRule) && (
        <ul className="lineage">
          {job.parent && (
            <li>Forked from <a href={href({ page: 'job', jobId: job.parent.id })}>run {shortId(job.parent.id)}</a> ({job.parent.config.name}{' '}
              v{job.parent.config.version}) at round {job.parentRound}.</li>
          )}
          {job.forks.length > 0 && (
            <li>Forks: {job.forks.map((fork, i) => (
              <span key={fork.id}>{i > 0 && ', '}<a href={href({ page: 'job', jobId: fork.id })}>run {shortId(fork.id)}</a> from round{' '}
                {fork.parentRound} <StatusBadge status={fork.status} /></span>
            ))}</li>
          )}
          {job.stopRule && <li>{describeStopRule(job.stopRule)}</li>}
        </ul>
      )}
      {final && (
        <div className="final">
          <strong>Final model</strong> (round {final.round}, {formatBytes(final.sizeBytes)}):{' '}
          <CheckpointButtons jobId={job.id} round={final.round} prefix="Download final model" />
        </div>
      )}
      <Checkpoints job={job} />
      <h3>Metrics</h3>
      <Downloads items={[
        { label: 'Metrics (CSV)', path: `/jobs/${job.id}/metrics.csv`, fileName: `run-${shortId(job.id)}-metrics.csv` },
        { label: 'Metrics (JSON)', path: `/jobs/${job.id}/metrics.json`, fileName: `run-${shortId(job.id)}-metrics.json` },
      ]} />
    </>
  );
}

function Checkpoints({ job }: { job: Job }) {
  const [forkRound, setForkRound] = useState<number>();
  const editable = canEdit(job.project.myRole);
  if (job.checkpoints.length === 0) {
    return <p className="muted">{FINISHED.includes(job.status) ? 'No model was kept from this run.' : 'Models are kept as rounds end.'}</p>;
  }
  return (
    <>
      <h3>Kept models ({formatBytes(job.checkpointsSizeBytes)})</h3>
      <div className="table-scroll">
        <table className="checkpoints">
          <thead>
            <tr><th scope="col">Round</th><th scope="col">Kept as</th><th scope="col">Size</th><th scope="col">SHA-256</th>
              <th scope="col">Download</th>{editable && <th scope="col">Fork</th>}</tr>
          </thead>
          <tbody>
            {job.checkpoints.map((checkpoint) => (
              <tr key={checkpoint.round} data-round={checkpoint.round}>
                <th scope="row">{checkpoint.round}</th>
                <td>{checkpoint.reasons.map((reason) => reason.toLowerCase()).join(', ')}</td>
                <td>{formatBytes(checkpoint.sizeBytes)}</td>
                <td><code title={checkpoint.sha256}>{checkpoint.sha256.slice(0, 12)}…</code></td>
                <td><CheckpointButtons jobId={job.id} round={checkpoint.round} prefix={`Download round ${checkpoint.round} as`} /></td>
                {editable && (
                  <td><button type="button" onClick={() => setForkRound(checkpoint.round)}>Fork from round {checkpoint.round}</button></td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {editable && forkRound !== undefined && <ForkForm key={forkRound} job={job} fromRound={forkRound} onCancel={() => setForkRound(undefined)} />}
    </>
  );
}

/**
 * A kept model in each format. A signed link (valid for minutes) is asked for at the click, so
 * the browser downloads the file itself, straight to disk, however large the model.
 */
function CheckpointButtons({ jobId, round, prefix }: { jobId: string; round: number; prefix: string }) {
  const { client } = useConnection();
  const [error, setError] = useState<unknown>();
  const save = async (format: CheckpointFormat, extension: string) => {
    setError(undefined);
    const { data } = await client.query({ query: CheckpointLinksDocument, variables: { id: jobId, format }, fetchPolicy: 'no-cache' });
    const link = data?.trainingJob?.checkpoints.find((checkpoint) => checkpoint.round === round)?.downloadLink;
    if (!link) throw new Error(`The model of round ${round} is no longer kept.`);
    saveLink(link, `run-${shortId(jobId)}-round-${round}.${extension}`);
  };
  return (
    <span className="format-buttons">
      {FORMATS.map(({ format, label, extension }) => (
        <button key={format} type="button" aria-label={`${prefix} ${label}`} onClick={() => save(format, extension).catch(setError)}>
          {label}
        </button>
      ))}
      <ErrorText error={error} />
    </span>
  );
}

/** A new run from a kept model of this one: rounds go on from there, with this config or another of the project's. */
function ForkForm({ job, fromRound, onCancel }: { job: Job; fromRound: number; onCancel: () => void }) {
  const { data } = useQuery(ForkChoicesDocument, { variables: { projectId: job.project.id } });
  const [fork, { loading, error }] = useMutation(ForkRunDocument);
  const configs = data?.project?.configs.edges.map(({ node }) => node) ?? [];
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const fields = fieldsOf(event.currentTarget);
    const input = {
      jobId: job.id, fromRound, configId: fields.text('configId'), federation: fields.text('federation') as FederationKind, ...runOptionsFrom(fields),
    };
    const result = await fork({ variables: { input } }).catch(() => undefined);
    if (result?.data) navigate({ page: 'job', jobId: result.data.forkTraining.id });
  }
  return (
    <form className="panel row-form" onSubmit={submit} aria-labelledby="fork-title">
      <h3 id="fork-title">Fork from round {fromRound}</h3>
      <p className="hint">The new run starts from this model; its rounds go on from {fromRound + 1}.</p>
      <label>Config
        <select name="configId" defaultValue={job.config.id}>
          {configs.length === 0 && <option value={job.config.id}>{job.config.name} v{job.config.version}</option>}
          {configs.map((config) => (
            <option key={config.id} value={config.id}>{config.name} v{config.version} ({config.rounds} more rounds, {config.clients} clients)</option>
          ))}
        </select>
      </label>
      <FederationSelect defaultValue={job.federation} />
      <RunOptionFields />
      <button type="submit" disabled={loading}>Start the fork</button>
      <button type="button" className="link" onClick={onCancel}>Cancel</button>
      <ErrorText error={error} />
    </form>
  );
}
