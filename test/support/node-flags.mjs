// Plain JavaScript, so that the tests and the benchmarks in bench/ share it.
import { readFileSync } from 'node:fs';

/**
 * The flags `npm start` gives node before Pollen's script (package.json "config.nodeFlags"), so
 * that tests and benchmarks run Pollen as it runs in production.
 * @type {string[]}
 */
export const POLLEN_NODE_FLAGS = String(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).config?.nodeFlags ?? '')
  .split(' ').filter(Boolean);
