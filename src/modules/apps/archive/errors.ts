import { GraphQLError } from 'graphql';
import { ErrorCode } from '../../../errors.js';

export type ArchiveRejection =
  | 'NOT_A_ZIP' | 'TOO_LARGE' | 'TOO_MANY_ENTRIES' | 'ZIP_BOMB' | 'PATH_TRAVERSAL' | 'ABSOLUTE_PATH'
  | 'SYMLINK' | 'DUPLICATE_ENTRY' | 'ENCRYPTED' | 'MISSING_FILE' | 'BAD_PYPROJECT' | 'BAD_COMPONENT';

export const MiB = 1024 * 1024;

/** Why an archive is refused: INVALID_APP_ARCHIVE with a `reason` clients can rely on. */
export function invalidArchive(reason: ArchiveRejection, message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.INVALID_APP_ARCHIVE, reason } });
}

/** An archive over the upload limit; `size` may be only what was received before giving up. */
export function archiveTooLarge(size: number, maxBytes: number): GraphQLError {
  return invalidArchive('TOO_LARGE', `The archive is ${size > maxBytes ? overLimit(size, maxBytes) : `larger than the ${formatSize(maxBytes)} limit`}.`);
}

export function notAZip(message: string): GraphQLError {
  return invalidArchive('NOT_A_ZIP', message);
}

export function quoted(name: string): string {
  return JSON.stringify(name);
}

export function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

/** '400 MB, more than the 100 MB limit', in exact bytes when rounding would make both look equal. */
export function overLimit(size: number, limit: number): string {
  const [formattedSize, formattedLimit] = [formatSize(size), formatSize(limit)];
  return formattedSize === formattedLimit
    ? `${size} bytes, more than the ${limit}-byte limit`
    : `${formattedSize}, more than the ${formattedLimit} limit`;
}

export function formatSize(bytes: number): string {
  const oneDecimal = (value: number) => Math.round(value * 10) / 10;
  if (bytes < 1024) return `${bytes} byte${bytes === 1 ? '' : 's'}`;
  if (bytes < MiB) return `${oneDecimal(bytes / 1024)} KB`;
  return `${oneDecimal(bytes / MiB)} MB`;
}
