import { useEffect, useMemo } from 'react';
import { PHASE_LABELS } from '../format';
import type { MetricPhase } from '../generated/graphql';
import { alignSeries, type MetricStore } from '../live/metric-store';
import { MetricChart, type ChartSeries } from './MetricChart';

export const PHASE_STYLES: Record<MetricPhase, { color: string; dash?: number[] }> = {
  TRAIN: { color: '#2f6fae' },
  EVALUATE: { color: '#d9711c', dash: [6, 4] },
  SERVER_EVALUATE: { color: '#3c8d40', dash: [2, 3] },
};

/** One chart per metric name, a line per phase that reports it, growing as rounds end. */
export function JobCharts({ jobId, store, version }: { jobId: string; store: MetricStore; version: number }) {
  const charts = useMemo(() => store.names().map((name) => {
    const phases = store.phasesOf(name);
    const series: ChartSeries[] = phases.map((phase) => ({ label: PHASE_LABELS[phase], ...PHASE_STYLES[phase] }));
    return { name, series, data: alignSeries(phases.map((phase) => store.series(name, phase))) };
    // version says when the store changed.
  }), [store, version]);

  // Marks the frame that shows new data (bench/dashboard.mjs measures from pollen:metrics-received).
  useEffect(() => {
    if (charts.length === 0) return undefined;
    const frame = requestAnimationFrame(() => performance.mark('pollen:charts-drawn', { detail: { jobId, version } }));
    return () => cancelAnimationFrame(frame);
  }, [charts, jobId, version]);

  if (charts.length === 0) return <p className="muted">No metrics yet: the first arrive when round 1 (or an initial evaluation) ends.</p>;
  return (
    <div className="charts">
      {charts.map((chart) => <MetricChart key={chart.name} syncKey={jobId} {...chart} />)}
    </div>
  );
}
