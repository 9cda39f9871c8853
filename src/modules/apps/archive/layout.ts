import path from 'node:path';
import { invalidArchive } from './errors.js';
import { isDirectory, stripTrailingSlash, type ZipEntry } from './zip.js';

export interface AppLayout {
  rootPrefix: string;
  files: string[];
  pyproject: ZipEntry;
}

/** Where the app is in the archive, its files, and its pyproject.toml; refuses an archive without the files Flower needs. */
export function resolveLayout(entries: ZipEntry[]): AppLayout {
  const appEntries = entries.filter((entry) => !isMacOsNoise(entry.name));
  const rootPrefix = findAppRoot(appEntries);
  const files = appEntries.filter((entry) => !isDirectory(entry)).map((entry) => entry.name.slice(rootPrefix.length)).sort();
  for (const required of ['server_app.py', 'client_app.py']) {
    if (!files.some((file) => path.posix.basename(file) === required)) {
      throw invalidArchive('MISSING_FILE', `There is no ${required} anywhere under ${describeRoot(rootPrefix)}; ` +
        `Flower apps keep it in their package folder (e.g. myapp/${required}).`);
    }
  }
  const pyproject = appEntries.find((entry) => entry.name === `${rootPrefix}pyproject.toml`)!;
  return { rootPrefix, files, pyproject };
}

/** The archive root, or the single top-level folder everything was zipped in. */
function findAppRoot(appEntries: ZipEntry[]): string {
  const filePaths = new Set(appEntries.filter((entry) => !isDirectory(entry)).map((entry) => entry.name));
  if (filePaths.has('pyproject.toml')) return '';
  const topLevel = new Set(appEntries.map((entry) => entry.name.slice(0, entry.name.indexOf('/') + 1) || entry.name));
  const [onlyFolder] = topLevel;
  if (topLevel.size === 1 && onlyFolder.endsWith('/')) {
    if (filePaths.has(`${onlyFolder}pyproject.toml`)) return onlyFolder;
    throw invalidArchive('MISSING_FILE', `There is no pyproject.toml at the archive root or in its top-level folder ${onlyFolder}.`);
  }
  throw invalidArchive('MISSING_FILE', appEntries.length === 0
    ? 'The archive is empty: a Flower App needs at least pyproject.toml, server_app.py and client_app.py.'
    : 'There is no pyproject.toml at the archive root. Zip the app folder\'s contents, or the app folder alone as the only top-level folder.');
}

export function describeRoot(rootPrefix: string): string {
  return rootPrefix === '' ? 'the archive root' : `the app folder ${rootPrefix}`;
}

/** Finder adds these when zipping; they are checked like any entry but are not part of the app. */
export function isMacOsNoise(name: string): boolean {
  return name.startsWith('__MACOSX/') || path.posix.basename(stripTrailingSlash(name)) === '.DS_Store';
}

