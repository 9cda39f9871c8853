import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

/** Structured JSON logs on stdout; every request's lines carry its `requestId`. */
export function createLogger(level: LogLevel): Logger {
  return pino({
    level,
    base: { service: 'pollen' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['password', '*.password', 'refreshToken', '*.refreshToken', 'authorization', '*.authorization'],
      censor: '[redacted]',
    },
  });
}
