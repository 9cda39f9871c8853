import type { GraphQLFormattedError } from 'graphql';
import { ErrorCode, isClientFacingCode } from '../errors.js';

/**
 * What clients see of an error: expected errors keep their code and message (never a stack);
 * anything else becomes "Internal server error" and is logged with its stack by the caller.
 */
export function maskError(formatted: GraphQLFormattedError, requestId?: string): GraphQLFormattedError {
  const { stacktrace: _stacktrace, http: _http, ...extensions } = formatted.extensions ?? {};
  const withId = requestId ? { requestId } : {};
  if (isClientFacingCode(extensions.code)) {
    return { ...formatted, extensions: { ...extensions, ...withId } };
  }
  return {
    message: 'Internal server error',
    ...(formatted.locations ? { locations: formatted.locations } : {}),
    ...(formatted.path ? { path: formatted.path } : {}),
    extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR, ...withId },
  };
}

export function isExpectedError(error: { extensions?: { code?: unknown } }): boolean {
  return isClientFacingCode(error.extensions?.code);
}
