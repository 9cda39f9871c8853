import { MetricPhase, type MetricValues, type RoundMetric } from './round-metric.model.js';

const PHASE_ORDER = Object.values(MetricPhase);
const FIXED_COLUMNS = ['round', 'phase', 'recorded_at'];

/** Rounds ascending, and within a round the phases in the order Flower reports them. */
function inOrder(metrics: readonly RoundMetric[]): RoundMetric[] {
  return [...metrics].sort((a, b) => a.round - b.round || PHASE_ORDER.indexOf(a.phase) - PHASE_ORDER.indexOf(b.phase));
}

/**
 * A job's metrics as CSV (RFC 4180): one row per round and phase, one column per metric name (in
 * name order), empty where a phase did not report that metric.
 */
export function metricsCsv(metrics: readonly RoundMetric[]): string {
  const rows = inOrder(metrics).map((metric) => ({ metric, values: JSON.parse(metric.valuesJson) as MetricValues }));
  const names = [...new Set(rows.flatMap(({ values }) => Object.keys(values)))].sort();
  const lines = [[...FIXED_COLUMNS, ...names].map(csvText)];
  for (const { metric, values } of rows) {
    lines.push([String(metric.round), metric.phase, metric.recordedAt.toISOString(), ...names.map((name) => csvValue(values[name]))]);
  }
  return lines.map((cells) => `${cells.join(',')}\r\n`).join('');
}

/** The same as JSON: `{ jobId, metrics: [{ round, phase, recordedAt, values }] }`. */
export function metricsJson(jobId: string, metrics: readonly RoundMetric[]): string {
  return JSON.stringify({
    jobId,
    metrics: inOrder(metrics).map(({ round, phase, recordedAt, valuesJson }) => ({
      round, phase, recordedAt: recordedAt.toISOString(), values: JSON.parse(valuesJson) as MetricValues,
    })),
  });
}

function csvValue(value: MetricValues[string] | undefined): string {
  if (value === undefined) return '';
  return typeof value === 'string' ? csvText(value) : String(value);
}

/**
 * Text from the app (metric names, string values): quoted when it must be, and kept from being
 * read as a formula by a spreadsheet (a leading =, +, -, @, tab or carriage return gets a ').
 */
function csvText(text: string): string {
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}
