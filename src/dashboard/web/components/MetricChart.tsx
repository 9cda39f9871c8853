import { useId, useLayoutEffect, useRef, useState } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatValue } from '../format';
import type { AlignedSeries } from '../live/metric-store';

export interface ChartSeries {
  label: string;
  color: string;
  dash?: number[];
  /** false: drawn no more for now (switching it back is cheaper than a new chart). */
  show?: boolean;
}

interface Props {
  /** The metric's name: the chart's title and its data-metric attribute. */
  name: string;
  series: ChartSeries[];
  data: AlignedSeries;
  /** Charts with the same key move their cursors together. */
  syncKey: string;
}

const HEIGHT = 220;
const ROUND_STEPS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000];

/**
 * One metric across rounds, drawn by uPlot on a canvas: a few thousand points redraw in well
 * under a frame, so live data is handed over whole on every change (setData), and the same chart
 * takes ten overlaid runs. The canvas is described in words and, on request, as a table.
 */
export function MetricChart({ name, series, data, syncKey }: Props) {
  const plotElement = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot>(undefined);
  const titleId = useId();
  const signature = JSON.stringify(series.map(({ label, color, dash }) => [label, color, dash]));

  // A new chart when the series change (a phase or run appears); new data is only setData, and a
  // series shown or hidden only setSeries.
  useLayoutEffect(() => {
    const element = plotElement.current!;
    const chart = new uPlot({
      width: element.clientWidth || 600,
      height: HEIGHT,
      scales: { x: { time: false } },
      // Rounds are whole numbers: ticks never fall between two.
      axes: [{ label: 'Round', size: 40, incrs: ROUND_STEPS }, { size: 56 }],
      series: [
        { label: 'Round' },
        ...series.map(({ label, color, dash, show }) => ({ label, stroke: color, width: 2, dash, show: show !== false, spanGaps: true, points: { size: 5 } })),
      ],
      cursor: { sync: { key: syncKey } },
      legend: { live: true },
    }, toPlotData(data), element);
    plot.current = chart;
    const resize = new ResizeObserver(([entry]) => {
      const width = Math.floor(entry!.contentRect.width);
      if (width > 0 && width !== chart.width) chart.setSize({ width, height: HEIGHT });
    });
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = undefined;
    };
    // data is handed over by the effect below; the chart is rebuilt only for new series.
  }, [signature, syncKey]);

  useLayoutEffect(() => {
    plot.current?.setData(toPlotData(data));
  }, [data]);

  useLayoutEffect(() => {
    series.forEach(({ show }, i) => {
      if (plot.current && plot.current.series[i + 1]!.show !== (show !== false)) plot.current.setSeries(i + 1, { show: show !== false });
    });
  }, [series]);

  const shown = visible(series, data);
  const points = shown.data.columns.reduce((sum, column) => sum + column.filter((value) => value !== null).length, 0);
  const lastRound = data.rounds.at(-1);
  return (
    <figure className="chart" aria-labelledby={titleId} data-metric={name} data-points={points} data-last-round={lastRound ?? ''}>
      <figcaption id={titleId}>{name}</figcaption>
      <div ref={plotElement} className="chart-plot" role="img" aria-label={describe(name, shown.series, shown.data)} />
      <DataTable name={name} series={shown.series} data={shown.data} />
    </figure>
  );
}

/** The series drawn now, with their columns. */
function visible(series: ChartSeries[], { rounds, columns }: AlignedSeries): { series: ChartSeries[]; data: AlignedSeries } {
  const kept = series.flatMap((one, i) => (one.show === false ? [] : [i]));
  return { series: kept.map((i) => series[i]!), data: { rounds, columns: kept.map((i) => columns[i]!) } };
}

function toPlotData({ rounds, columns }: AlignedSeries): uPlot.AlignedData {
  return [rounds, ...columns];
}

/** The chart in one sentence, for screen readers: each series' latest value. */
function describe(name: string, series: ChartSeries[], { rounds, columns }: AlignedSeries): string {
  if (rounds.length === 0) return `${name}: no rounds yet.`;
  const latest = series.map(({ label }, i) => {
    const index = columns[i]!.findLastIndex((value) => value !== null);
    return index < 0 ? `${label} none yet` : `${label} ${formatValue(columns[i]![index]!)} at round ${rounds[index]}`;
  });
  return `${name} over rounds ${rounds[0]} to ${rounds.at(-1)}: ${latest.join('; ')}.`;
}

/** The numbers behind the chart, built only while open (eight charts of 100 rounds stay light). */
function DataTable({ name, series, data }: Omit<Props, 'syncKey'>) {
  const [open, setOpen] = useState(false);
  return (
    <details className="chart-table" onToggle={(event) => setOpen(event.currentTarget.open)}>
      <summary>Table of {name}</summary>
      {open && (
        <div className="table-scroll">
          <table>
            <thead>
              <tr><th scope="col">Round</th>{series.map(({ label }) => <th scope="col" key={label}>{label}</th>)}</tr>
            </thead>
            <tbody>
              {data.rounds.map((round, row) => (
                <tr key={round}>
                  <th scope="row">{round}</th>
                  {data.columns.map((column, i) => <td key={series[i]!.label}>{column[row] === null ? '' : formatValue(column[row]!)}</td>)}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </details>
  );
}
