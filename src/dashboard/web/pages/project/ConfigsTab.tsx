import { useMutation, useQuery } from '@apollo/client/react';
import { useId, useState, type FormEvent } from 'react';
import { ErrorText } from '../../components/common';
import { fieldsOf } from '../../forms';
import { formatDate } from '../../format';
import { ProjectConfigsDocument, SaveConfigDocument, type ConfigVersionFragment } from '../../generated/graphql';
import { canEdit } from '../../roles';

/** The fields a version shows, in order, each as text. */
const FIELDS: ReadonlyArray<[string, (config: ConfigVersionFragment) => string]> = [
  ['Rounds', (c) => String(c.rounds)],
  ['Clients', (c) => String(c.clients)],
  ['Learning rate', (c) => String(c.learningRate)],
  ['Batch size', (c) => String(c.batchSize)],
  ['Model type', (c) => c.modelType ?? '–'],
  ['Run config', (c) => (Object.keys(c.runConfig).length > 0 ? JSON.stringify(c.runConfig) : '–')],
  ['Saved by', (c) => `${c.createdBy.username}, ${formatDate(c.createdAt)}`],
];

export function ConfigsTab({ projectId }: { projectId: string }) {
  const { data, error, refetch } = useQuery(ProjectConfigsDocument, { variables: { id: projectId }, fetchPolicy: 'cache-and-network' });
  const [base, setBase] = useState<ConfigVersionFragment>();
  const project = data?.project;
  if (error) return <ErrorText error={error} />;
  if (!project) return <p className="muted">Loading configs…</p>;
  const byName = new Map<string, ConfigVersionFragment[]>();
  for (const { node } of project.configs.edges) byName.set(node.name, [...(byName.get(node.name) ?? []), node]);
  const editable = canEdit(project.myRole);
  return (
    <>
      {editable && <ConfigForm key={base?.id ?? 'new'} projectId={projectId} base={base} onSaved={() => void refetch()} />}
      <h2>Configs ({byName.size})</h2>
      {byName.size === 0 && <p className="muted">No configs yet.</p>}
      {[...byName].map(([name, versions]) => (
        <ConfigVersions key={name} name={name} versions={versions.sort((a, b) => a.version - b.version)}
          onUseAsBase={editable ? setBase : undefined} />
      ))}
    </>
  );
}

/** Every version of one config side by side; a value that changed from the version before is marked. */
function ConfigVersions({ name, versions, onUseAsBase }: {
  name: string; versions: ConfigVersionFragment[]; onUseAsBase?: (config: ConfigVersionFragment) => void;
}) {
  const titleId = useId();
  return (
    <section className="config" aria-labelledby={titleId}>
      <h3 id={titleId}>{name}</h3>
      <div className="table-scroll">
        <table className="versions">
          <thead>
            <tr><th scope="col">Field</th>{versions.map((v) => <th scope="col" key={v.id}>Version {v.version}</th>)}</tr>
          </thead>
          <tbody>
            {FIELDS.map(([label, read]) => (
              <tr key={label}>
                <th scope="row">{label}</th>
                {versions.map((version, i) => {
                  const changed = i > 0 && label !== 'Saved by' && read(version) !== read(versions[i - 1]!);
                  return <td key={version.id} className={changed ? 'changed' : undefined}>{read(version)}{changed && <span className="sr-only"> (changed)</span>}</td>;
                })}
              </tr>
            ))}
            {onUseAsBase && (
              <tr>
                <th scope="row">New version</th>
                {versions.map((version) => (
                  <td key={version.id}><button type="button" onClick={() => onUseAsBase(version)}>Start from v{version.version}</button></td>
                ))}
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function ConfigForm({ projectId, base, onSaved }: { projectId: string; base?: ConfigVersionFragment; onSaved: () => void }) {
  const [save, { loading, error }] = useMutation(SaveConfigDocument);
  const [formError, setFormError] = useState<string>();
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const { text, number } = fieldsOf(formElement);
    let runConfig: Record<string, unknown> | null = null;
    if (text('runConfig')) {
      try {
        runConfig = JSON.parse(text('runConfig')) as Record<string, unknown>;
      } catch {
        setFormError('Run config overrides must be JSON, such as {"local-epochs": 2}.');
        return;
      }
    }
    setFormError(undefined);
    const result = await save({ variables: { input: {
      projectId, name: text('name'), rounds: Number(text('rounds')), clients: Number(text('clients')),
      learningRate: number('learningRate'), batchSize: number('batchSize'), modelType: text('modelType') || null, runConfig,
    } } }).catch(() => undefined);
    if (result?.data) {
      formElement.reset();
      onSaved();
    }
  }
  return (
    <form className="panel grid-form" onSubmit={submit} aria-labelledby="config-form-title">
      <h2 id="config-form-title">{base ? `New version of ${base.name}` : 'New config'}</h2>
      <p className="hint">Saving under a name that exists adds its next version; saved versions never change.</p>
      <label>Name<input name="name" required defaultValue={base?.name} /></label>
      <label>Rounds<input name="rounds" type="number" required defaultValue={base?.rounds ?? 3} /></label>
      <label>Clients<input name="clients" type="number" required defaultValue={base?.clients ?? 2} /></label>
      <label>Learning rate<input name="learningRate" type="number" step="any" defaultValue={base?.learningRate} /></label>
      <label>Batch size<input name="batchSize" type="number" defaultValue={base?.batchSize} /></label>
      <label>Model type<input name="modelType" defaultValue={base?.modelType ?? ''} /></label>
      <label className="wide">Run config overrides (JSON)
        <textarea name="runConfig" rows={2} placeholder='{"local-epochs": 2}'
          defaultValue={base && Object.keys(base.runConfig).length > 0 ? JSON.stringify(base.runConfig) : ''} />
      </label>
      <ErrorText error={formError ? new Error(formError) : error} />
      <button type="submit" disabled={loading}>Save config</button>
    </form>
  );
}
