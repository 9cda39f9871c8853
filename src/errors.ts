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

export function forbidden(message = 'You are not allowed to do this.'): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.FORBIDDEN } });
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

/** A duplicate key from a unique index (MongoDB and FerretDB both answer 11000 on insert). */
export function isDuplicateKeyError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 11000;
}
