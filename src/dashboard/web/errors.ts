import { CombinedGraphQLErrors } from '@apollo/client';

/** Why Pollen refused an archive, as a heading above its detailed message. */
const ARCHIVE_REFUSALS: Record<string, string> = {
  NOT_A_ZIP: 'This file is not a ZIP archive.',
  TOO_LARGE: 'This archive is too large.',
  TOO_MANY_ENTRIES: 'This archive holds too many files.',
  ZIP_BOMB: 'This archive unpacks to far more than Pollen accepts.',
  PATH_TRAVERSAL: 'A file in this archive points outside it.',
  ABSOLUTE_PATH: 'A file in this archive has an absolute path.',
  SYMLINK: 'This archive holds a symbolic link.',
  DUPLICATE_ENTRY: 'This archive names a file twice.',
  ENCRYPTED: 'This archive is encrypted.',
  MISSING_FILE: 'This archive is not a Flower App: a required file is missing.',
  BAD_PYPROJECT: 'The pyproject.toml in this archive does not describe a Flower App.',
  BAD_COMPONENT: 'The pyproject.toml names a ServerApp or ClientApp that is not in the archive.',
};

/** What to tell a person about a failed operation: Pollen's messages are written for them. */
export function describeError(error: unknown): string {
  if (CombinedGraphQLErrors.is(error)) {
    return error.errors.map((e) => {
      const reason = e.extensions?.code === 'INVALID_APP_ARCHIVE' ? ARCHIVE_REFUSALS[String(e.extensions.reason)] : undefined;
      return reason ? `${reason} ${e.message}` : e.message;
    }).join(' ');
  }
  return error instanceof Error ? error.message : String(error);
}
