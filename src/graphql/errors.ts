import type { GraphQLError, GraphQLFormattedError } from 'graphql';
import { databaseUnavailable, ErrorCode, isClientFacingCode, isDatabaseUnavailableError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * What clients see of an error: expected errors keep their code and message (never a stack); an
 * unreachable database becomes DATABASE_UNAVAILABLE; anything else becomes "Internal server error"
 * and is logged with its stack by the caller (see reportError). `error` is the error before
 * formatting, whose originalError tells a database outage from a bug. With `hideSchema`
 * (production, where introspection is off) graphql-js's "Did you mean …?" hints are cut, since
 * they name fields and enum values to anyone who guesses near them.
 */
export function maskError(formatted: GraphQLFormattedError, requestId?: string, error?: unknown, hideSchema = false): GraphQLFormattedError {
  const { stacktrace: _stacktrace, http: _http, ...extensions } = formatted.extensions ?? {};
  const withId = requestId ? { requestId } : {};
  if (isClientFacingCode(extensions.code)) {
    const message = hideSchema ? formatted.message.replace(/ ?Did you mean .*\?$/, '') : formatted.message;
    return { ...formatted, message, extensions: { ...extensions, ...withId } };
  }
  const where = { ...(formatted.locations ? { locations: formatted.locations } : {}), ...(formatted.path ? { path: formatted.path } : {}) };
  if (isDatabaseUnavailableError(error)) {
    const unavailable = databaseUnavailable();
    return { message: unavailable.message, ...where, extensions: { ...unavailable.extensions, ...withId } };
  }
  return { message: 'Internal server error', ...where, extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR, ...withId } };
}

export function isExpectedError(error: { extensions?: { code?: unknown } }): boolean {
  return isClientFacingCode(error.extensions?.code);
}

/** Logs what an operator needs: an unreachable database as a warning, any other unexpected error with its stack. */
export function reportError(error: GraphQLError, logger: Logger): void {
  if (isExpectedError(error)) return;
  const err = error.originalError ?? error;
  if (isDatabaseUnavailableError(err)) logger.warn({ err, path: error.path }, 'database unavailable');
  else logger.error({ err, path: error.path }, 'unexpected error');
}
