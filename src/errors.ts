import { GraphQLError } from 'graphql';

/** The stable codes clients can rely on (see the API contract). */
export const ErrorCode = {
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  INVALID_APP_ARCHIVE: 'INVALID_APP_ARCHIVE',
  CONFLICT: 'CONFLICT',
  RATE_LIMITED: 'RATE_LIMITED',
  DATABASE_UNAVAILABLE: 'DATABASE_UNAVAILABLE',
  INTERNAL_SERVER_ERROR: 'INTERNAL_SERVER_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Codes that Apollo and graphql-ws produce for malformed requests; shown to clients as they are. */
const REQUEST_ERROR_CODES = new Set([
  'GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'BAD_REQUEST',
  'PERSISTED_QUERY_NOT_FOUND', 'PERSISTED_QUERY_NOT_SUPPORTED', 'OPERATION_RESOLUTION_FAILURE',
]);

export function isClientFacingCode(code: unknown): boolean {
  return typeof code === 'string' && (code in ErrorCode || REQUEST_ERROR_CODES.has(code)) &&
    code !== ErrorCode.INTERNAL_SERVER_ERROR;
}

export interface FieldViolation { field: string; message: string }

export function badUserInput(violations: FieldViolation[], extra: Record<string, unknown> = {}): GraphQLError {
  const message = violations.map((v) => `${v.field}: ${v.message}`).join('; ');
  return new GraphQLError(message, {
    extensions: { code: ErrorCode.BAD_USER_INPUT, field: violations[0]?.field, violations, ...extra },
  });
}

export function unauthenticated(message = 'You must be signed in.'): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.UNAUTHENTICATED } });
}

export function forbidden(message = 'You are not allowed to do this.', extra: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.FORBIDDEN, ...extra } });
}

export function notFound(what: string): GraphQLError {
  return new GraphQLError(`${what} not found.`, { extensions: { code: ErrorCode.NOT_FOUND } });
}

export function conflict(message: string, extra: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.CONFLICT, ...extra } });
}

export function rateLimited(message: string, retryAfterSeconds: number): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.RATE_LIMITED, retryAfterSeconds } });
}

/** Seconds a client is asked to wait before retrying after DATABASE_UNAVAILABLE (also the Retry-After header). */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

/** The database cannot be reached right now; the request may be retried once it is back. */
export function databaseUnavailable(): GraphQLError {
  return new GraphQLError('The database is unavailable right now. Try again shortly.', {
    extensions: { code: ErrorCode.DATABASE_UNAVAILABLE, retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS },
  });
}

/** A duplicate key from a unique index (MongoDB and FerretDB both answer 11000 on insert). */
export function isDuplicateKeyError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 11000;
}

/**
 * Errors that mean "the database cannot be reached" rather than "this operation is wrong": no
 * server to select, a connection refused or dropped, a pool cleared after a network failure (not
 * a client Pollen closed itself). Checked by name, through wrappers, so that every copy of the
 * driver is recognized.
 */
const DATABASE_UNAVAILABLE_ERRORS = new Set([
  'MongoServerSelectionError', 'MongooseServerSelectionError', 'MongoNetworkError', 'MongoNetworkTimeoutError',
  'MongoPoolClearedError',
]);

export function isDatabaseUnavailableError(error: unknown): boolean {
  for (let current = error, depth = 0; typeof current === 'object' && current !== null && depth < 5; depth += 1) {
    const { name, extensions } = current as { name?: unknown; extensions?: { code?: unknown } };
    if (typeof name === 'string' && DATABASE_UNAVAILABLE_ERRORS.has(name)) return true;
    if (extensions?.code === ErrorCode.DATABASE_UNAVAILABLE) return true;
    // GraphQL's wrapper, an Error's cause, a bulk write's (insertMany's) underlying error.
    const wrapped = current as { originalError?: unknown; cause?: unknown; errorResponse?: unknown };
    current = wrapped.originalError ?? wrapped.cause ?? wrapped.errorResponse;
  }
  return false;
}
