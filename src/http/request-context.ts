import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { GraphQLError } from 'graphql';
import { DATABASE_RETRY_AFTER_SECONDS, databaseUnavailable, ErrorCode, isDatabaseUnavailableError } from '../errors.js';
import { maskError } from '../graphql/errors.js';
import type { OperationGate, OperationRequest } from '../graphql/operation-gate.js';
import type { Logger } from '../logger.js';

declare module 'express-serve-static-core' {
  interface Request {
    id: string;
    log: Logger;
  }
}

const INBOUND_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Gives each request an id (a caller's X-Request-Id when sane), a child logger and an access log line. */
export function requestContext(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const inbound = req.get('x-request-id');
    req.id = inbound && INBOUND_ID.test(inbound) ? inbound : randomUUID();
    req.log = logger.child({ requestId: req.id });
    res.setHeader('x-request-id', req.id);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      req.log.info({ method: req.method, path: req.originalUrl.split('?')[0], status: res.statusCode, ms: Math.round(ms * 10) / 10 }, 'request');
    });
    next();
  };
}

/** The client's IP address, for per-client rate limits. */
export function clientAddress(req: Request): string {
  return req.socket.remoteAddress ?? 'unknown';
}

const STATUS_BY_CODE: Record<string, number> = {
  UNAUTHENTICATED: 401, FORBIDDEN: 403, NOT_FOUND: 404, BAD_USER_INPUT: 400, CONFLICT: 409, RATE_LIMITED: 429,
};

/**
 * Answers errors outside GraphQL (body parsing, uploads, the REST routes) as JSON in the same
 * shape as GraphQL errors, with a 4xx status for anything the client got wrong.
 */
export function httpErrorHandler(err: unknown, req: Request, res: Response, next: NextFunction): void {
  if (res.headersSent) return next(err);
  if (isDatabaseUnavailableError(err)) {
    req.log.warn({ err }, 'database unavailable');
    res.status(503).set('retry-after', String(DATABASE_RETRY_AFTER_SECONDS)).json({ errors: [{
      message: databaseUnavailable().message, extensions: { code: ErrorCode.DATABASE_UNAVAILABLE, requestId: req.id },
    }] });
    return;
  }
  const code = err instanceof GraphQLError ? String(err.extensions.code) : undefined;
  const status = (code && STATUS_BY_CODE[code]) || httpStatusOf(err);
  if (status >= 500) req.log.error({ err }, 'unhandled request error');
  const message = status >= 500 ? 'Internal server error' : (err as Error).message || 'Bad request';
  const fallbackCode = status === 413 ? 'PAYLOAD_TOO_LARGE' : status >= 500 ? 'INTERNAL_SERVER_ERROR' : 'BAD_REQUEST';
  const retryAfter = err instanceof GraphQLError ? err.extensions.retryAfterSeconds : undefined;
  if (typeof retryAfter === 'number') res.set('retry-after', String(retryAfter));
  res.status(status).json({ errors: [{ message, extensions: { code: code ?? fallbackCode, requestId: req.id } }] });
}

function httpStatusOf(err: unknown): number {
  const status = (err as { status?: unknown; statusCode?: unknown })?.status ?? (err as { statusCode?: unknown })?.statusCode;
  return typeof status === 'number' && status >= 400 && status < 600 ? status : 500;
}

/**
 * Apollo's CSRF prevention, applied before multipart bodies are read: a browser form can post
 * multipart cross-site without a preflight, so such requests must carry a header that forces one.
 */
export function requirePreflightForMultipart(req: Request, res: Response, next: NextFunction): void {
  if (req.is('multipart/form-data') && !req.get('apollo-require-preflight') && !req.get('x-apollo-operation-name')) {
    res.status(400).json({ errors: [{
      message: 'Multipart requests must send an "apollo-require-preflight: true" header (CSRF prevention).',
      extensions: { code: 'BAD_REQUEST', requestId: req.id },
    }] });
    return;
  }
  next();
}

/**
 * A multipart request that says (Content-Length) it is far longer than any acceptable upload, more
 * than twice `maxUploadBytes` plus `maxFormBytes` for the rest of the form, gets 413 without being
 * parsed or stored. Its bytes are still read off the wire (and dropped) before the answer, as the
 * JSON parser does: HTTP/1.1 clients such as fetch keep sending, and one answered early may get
 * EPIPE instead of the answer. Anything shorter is read, and uploadApp answers a file over the
 * limit with INVALID_APP_ARCHIVE (TOO_LARGE), which GraphQL clients show better than an HTTP
 * status; so does a longer body sent without Content-Length, cut at the file limit as it is read.
 */
export function limitMultipartLength(maxUploadBytes: number, maxFormBytes: number) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const declared = Number(req.get('content-length'));
    if (!req.is('multipart/form-data') || !(declared > 2 * maxUploadBytes + maxFormBytes)) {
      next();
      return;
    }
    const mb = (bytes: number) => `${Math.round((bytes / 1024 ** 2) * 10) / 10} MB`;
    req.on('error', () => undefined); // a client that gives up: nobody to answer
    req.once('end', () => {
      res.status(413).json({ errors: [{
        message: `The request is ${mb(declared)}, far more than an upload may be: files up to ${mb(maxUploadBytes)} (MAX_UPLOAD_BYTES).`,
        extensions: { code: 'PAYLOAD_TOO_LARGE', requestId: req.id },
      }] });
    });
    req.resume();
  };
}

/** JSON must be UTF-8; the default parser would quietly replace invalid bytes instead. */
export function rejectInvalidUtf8(_req: Request, _res: Response, body: Buffer): void {
  if (!isUtf8(body)) throw Object.assign(new Error('The request body is not valid UTF-8.'), { status: 400 });
}

/**
 * The operation gate in front of Apollo: a document it refuses gets 400 with its errors before
 * Apollo parses, validates or runs anything. Bodies that are not one operation (a batch, no JSON)
 * go on to Apollo, which answers them itself.
 */
export function admitOperations(gate: OperationGate) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const request = req.method === 'GET' ? operationInQueryString(req) : req.body as unknown;
    if (typeof request !== 'object' || request === null || Array.isArray(request)) return next();
    const admission = gate.admit(request as OperationRequest, { subscriptions: false });
    if (!('errors' in admission)) return next();
    res.status(400).json({ errors: admission.errors.map((error) => maskError(error.toJSON(), req.id, error, gate.hidesSchema)) });
  };
}

function operationInQueryString(req: Request): OperationRequest | undefined {
  const { query, operationName, variables } = req.query as Record<string, unknown>;
  if (typeof query !== 'string') return undefined;
  try {
    return {
      query,
      operationName: typeof operationName === 'string' ? operationName : null,
      variables: typeof variables === 'string' ? JSON.parse(variables) as Record<string, unknown> : null,
    };
  } catch {
    return undefined; // unreadable variables: Apollo says so
  }
}
