import { useMutation, useQuery } from '@apollo/client/react';
import { useState, type FormEvent } from 'react';
import { download } from '../../apollo';
import { ErrorText } from '../../components/common';
import { fieldsOf } from '../../forms';
import { formatBytes, formatDate } from '../../format';
import { DropAppDocument, ProjectAppsDocument, UploadProjectAppDocument, type AppCardFragment } from '../../generated/graphql';
import { canEdit } from '../../roles';

export function AppsTab({ projectId }: { projectId: string }) {
  const { data, error, refetch } = useQuery(ProjectAppsDocument, { variables: { id: projectId }, fetchPolicy: 'cache-and-network' });
  const project = data?.project;
  if (error) return <ErrorText error={error} />;
  if (!project) return <p className="muted">Loading apps…</p>;
  const editable = canEdit(project.myRole);
  return (
    <>
      {editable && <UploadApp projectId={projectId} onUploaded={() => void refetch()} />}
      <h2>Apps ({project.apps.totalCount})</h2>
      {project.apps.edges.length === 0 && <p className="muted">No apps yet.</p>}
      <ul className="cards">
        {project.apps.edges.map(({ node: app }) => <AppCard key={app.id} app={app} editable={editable} onDeleted={() => void refetch()} />)}
      </ul>
    </>
  );
}

function UploadApp({ projectId, onUploaded }: { projectId: string; onUploaded: () => void }) {
  const [upload, { loading, error, data }] = useMutation(UploadProjectAppDocument);
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const file = fieldsOf(formElement).file('file');
    if (!(file instanceof File) || file.size === 0) return;
    const result = await upload({ variables: { projectId, file } }).catch(() => undefined);
    if (result?.data) {
      formElement.reset();
      onUploaded();
    }
  }
  return (
    <form className="panel row-form" onSubmit={submit} aria-labelledby="upload-title">
      <h2 id="upload-title">Upload a Flower App</h2>
      <label>ZIP archive of the app's folder
        <input name="file" type="file" accept=".zip,application/zip" required />
      </label>
      <button type="submit" disabled={loading}>{loading ? 'Checking…' : 'Upload'}</button>
      <ErrorText error={error} />
      {data && !loading && !error && <p role="status">Uploaded {data.uploadApp.name} {data.uploadApp.version}.</p>}
    </form>
  );
}

function AppCard({ app, editable, onDeleted }: { app: AppCardFragment; editable: boolean; onDeleted: () => void }) {
  const [drop, { loading, error }] = useMutation(DropAppDocument, { variables: { id: app.id } });
  const [downloadError, setDownloadError] = useState<unknown>();
  const keys = Object.entries(app.runConfigDefaults);
  return (
    <li className="card">
      <h3>{app.name} <span className="muted">{app.version}</span></h3>
      <p className="muted">
        {app.publisher ? `by ${app.publisher} · ` : ''}{formatBytes(app.sizeBytes)} · {app.files.length} files · uploaded by{' '}
        {app.uploadedBy.username}, {formatDate(app.createdAt)}
      </p>
      {keys.length > 0 && (
        <details>
          <summary>Run config keys ({keys.length})</summary>
          <dl className="pairs">
            {keys.map(([key, value]) => <div key={key}><dt>{key}</dt><dd>{JSON.stringify(value)}</dd></div>)}
          </dl>
        </details>
      )}
      <div className="actions">
        <button type="button" onClick={() => download(`/apps/${app.id}/archive`, `${app.name}-${app.version}.zip`).catch(setDownloadError)}>
          Download ZIP
        </button>
        {editable && (
          <button type="button" className="danger" disabled={loading}
            onClick={() => {
              if (confirm(`Delete ${app.name} ${app.version}? Runs that used it keep their history.`)) {
                void drop().then(({ data }) => data && onDeleted(), () => undefined);
              }
            }}>
            Delete app
          </button>
        )}
      </div>
      <ErrorText error={error ?? downloadError} />
    </li>
  );
}
