import { useState } from 'react';
import { download } from '../apollo';
import { ErrorText } from './common';

export interface DownloadItem {
  label: string;
  /** A path on Pollen's origin that answers GET with the Bearer token. */
  path: string;
  fileName: string;
}

export function Downloads({ items }: { items: readonly DownloadItem[] }) {
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState<string>();
  return (
    <div className="downloads">
      <ul className="actions">
        {items.map(({ label, path, fileName }) => (
          <li key={path}>
            <button type="button" disabled={busy === path} onClick={() => {
              setBusy(path);
              setError(undefined);
              download(path, fileName).catch(setError).finally(() => setBusy(undefined));
            }}>{label}</button>
          </li>
        ))}
      </ul>
      <ErrorText error={error} />
    </div>
  );
}
