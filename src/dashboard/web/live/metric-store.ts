import type { MetricPhase } from '../generated/graphql';

export const PHASES: readonly MetricPhase[] = ['TRAIN', 'EVALUATE', 'SERVER_EVALUATE'];

/** One round's metrics of one phase, as `metrics` and `roundMetrics` return them. */
export interface RoundMetrics {
  round: number;
  phase: MetricPhase;
  values: Record<string, unknown>;
}

/** One metric of one phase across rounds, as `metricSeries` returns it. */
export interface Series {
  phase: MetricPhase;
  name: string;
  points: ReadonlyArray<{ round: number; value: number }>;
}

/**
 * A job's numeric metrics by name and phase, one value per round: a replay that overlaps what is
 * already here changes nothing, so resuming a stream never duplicates a point.
 */
export class MetricStore {
  /** name -> phase -> round -> value */
  private readonly values = new Map<string, Map<MetricPhase, Map<number, number>>>();
  private newestRound = -1;
  /** Grows with every change; lets views know when to redraw. */
  version = 0;

  /** Adds rounds' metrics (`metrics`, `roundMetrics`); true when anything was new. */
  add(metrics: Iterable<RoundMetrics>): boolean {
    const before = this.version;
    for (const { round, phase, values } of metrics) {
      for (const [name, value] of Object.entries(values)) {
        if (typeof value === 'number' && Number.isFinite(value)) this.put(name, phase, round, value);
      }
    }
    return this.version !== before;
  }

  /** Adds whole series (`metricSeries`); true when anything was new. */
  addSeries(series: Iterable<Series>): boolean {
    const before = this.version;
    for (const { phase, name, points } of series) {
      for (const { round, value } of points) this.put(name, phase, round, value);
    }
    return this.version !== before;
  }

  private put(name: string, phase: MetricPhase, round: number, value: number): void {
    let phases = this.values.get(name);
    if (!phases) this.values.set(name, (phases = new Map()));
    let rounds = phases.get(phase);
    if (!rounds) phases.set(phase, (rounds = new Map()));
    if (rounds.get(round) === value) return;
    rounds.set(round, value);
    this.newestRound = Math.max(this.newestRound, round);
    this.version += 1;
  }

  /**
   * Where a resumed stream starts: the newest round here, since its other phases may still be on
   * their way (what arrives twice is dropped), or 0 when nothing arrived yet.
   */
  resumeRound(): number {
    return Math.max(this.newestRound, 0);
  }

  names(): string[] {
    return [...this.values.keys()].sort((a, b) => a.localeCompare(b));
  }

  phasesOf(name: string): MetricPhase[] {
    const phases = this.values.get(name);
    return PHASES.filter((phase) => phases?.has(phase));
  }

  /** Rounds ascending with the metric's value at each. */
  series(name: string, phase: MetricPhase): Array<[number, number]> {
    const rounds = this.values.get(name)?.get(phase);
    return rounds ? [...rounds].sort(([a], [b]) => a - b) : [];
  }

  pointCount(name: string): number {
    let count = 0;
    for (const rounds of this.values.get(name)?.values() ?? []) count += rounds.size;
    return count;
  }
}

/** Several series on one round axis, as a chart draws them: null where a series has no point. */
export interface AlignedSeries {
  rounds: number[];
  columns: Array<Array<number | null>>;
}

export function alignSeries(series: ReadonlyArray<ReadonlyArray<readonly [number, number]>>): AlignedSeries {
  const rounds = [...new Set(series.flatMap((points) => points.map(([round]) => round)))].sort((a, b) => a - b);
  const index = new Map(rounds.map((round, i) => [round, i]));
  const columns = series.map((points) => {
    const column: Array<number | null> = new Array(rounds.length).fill(null);
    for (const [round, value] of points) column[index.get(round)!] = value;
    return column;
  });
  return { rounds, columns };
}
