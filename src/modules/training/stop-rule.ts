import { prop } from '@typegoose/typegoose';
import { Field, Float, InputType, Int, ObjectType, registerEnumType } from 'type-graphql';
import { badUserInput, type FieldViolation } from '../../errors.js';
import { MetricPhase, type MetricValues } from './round-metric.model.js';

export enum MetricGoal {
  MINIMIZE = 'MINIMIZE',
  MAXIMIZE = 'MAXIMIZE',
}
registerEnumType(MetricGoal, { name: 'MetricGoal' });

const RULE_DESCRIPTION = 'Stop a run early. After each round Pollen checks `metric` of `phase`: it stops the run when the ' +
  'metric reaches `target`, or when `patience` rounds in a row did not improve on the best value by more than `minDelta` ' +
  '(default 0). The job then ends COMPLETED, `statusReason` says why and after which round, and its FINAL checkpoint is that round\'s.';

@InputType({ description: RULE_DESCRIPTION })
export class StopRuleInput {
  @Field(() => String)
  metric!: string;

  @Field(() => MetricPhase)
  phase!: MetricPhase;

  @Field(() => MetricGoal)
  goal!: MetricGoal;

  @Field(() => Float, { nullable: true })
  target?: number | null;

  @Field(() => Int, { nullable: true })
  patience?: number | null;

  @Field(() => Float, { nullable: true })
  minDelta?: number | null;
}

/** A job's stop rule, as stored and shown. */
@ObjectType()
export class StopRule {
  @Field(() => String)
  @prop({ required: true })
  metric!: string;

  @Field(() => MetricPhase)
  @prop({ required: true, enum: MetricPhase, type: () => String })
  phase!: MetricPhase;

  @Field(() => MetricGoal)
  @prop({ required: true, enum: MetricGoal, type: () => String })
  goal!: MetricGoal;

  @Field(() => Float, { nullable: true })
  @prop({ type: () => Number, default: null })
  target!: number | null;

  @Field(() => Int, { nullable: true })
  @prop({ type: () => Number, default: null })
  patience!: number | null;

  @Field(() => Float, { nullable: true })
  @prop({ type: () => Number, default: null })
  minDelta!: number | null;
}

const MAX_METRIC_NAME_LENGTH = 200;
const MAX_PATIENCE = 1000;

/** The rule as given, checked; BAD_USER_INPUT names each problem (field `stopWhen.<name>`). */
export function checkedStopRule(input: StopRuleInput | null | undefined): StopRule | null {
  if (!input) return null;
  const violations: FieldViolation[] = [];
  const violation = (field: string, message: string) => violations.push({ field: `stopWhen.${field}`, message });
  const metric = input.metric.trim();
  if (metric === '' || metric.length > MAX_METRIC_NAME_LENGTH) violation('metric', `must be 1 to ${MAX_METRIC_NAME_LENGTH} characters`);
  const target = input.target ?? null;
  const patience = input.patience ?? null;
  const minDelta = input.minDelta ?? null;
  if (target === null && patience === null) violation('target', 'or patience must be given: a rule needs a target, a patience, or both');
  if (target !== null && !Number.isFinite(target)) violation('target', 'must be a finite number');
  if (patience !== null && (!Number.isInteger(patience) || patience < 1 || patience > MAX_PATIENCE)) {
    violation('patience', `must be a whole number of rounds from 1 to ${MAX_PATIENCE}`);
  }
  if (minDelta !== null && (!Number.isFinite(minDelta) || minDelta < 0)) violation('minDelta', 'must be a number of 0 or more');
  if (minDelta !== null && patience === null) violation('minDelta', 'only counts with a patience');
  if (violations.length > 0) throw badUserInput(violations);
  return { metric, phase: input.phase, goal: input.goal, target, patience, minDelta };
}

/** What a stop rule says after a round: go on, stop (the run completes), or fail (the metric does not exist). */
export type StopVerdict = { stop: true; round: number; reason: string } | { fail: true; round: number; reason: string };

/**
 * Follows a stop rule over a run's metrics as they arrive. A round's values of the rule's phase
 * may come in several parts (legacy strategies report loss and metrics apart), so a round is judged
 * once it is closed: when the run asks whether to go on, reaches a later round, or ends. Rounds
 * before `firstRound` (an initial evaluation, a fork's starting model) count for nothing.
 */
export class StopRuleTracker {
  private readonly pending = new Map<number, MetricValues>();
  private best: { round: number; value: number } | undefined;
  private roundsWithoutImprovement = 0;
  private verdict: StopVerdict | undefined;

  constructor(private readonly rule: StopRule, private readonly firstRound: number) {}

  /** The verdict so far (the first one stands). */
  get decided(): StopVerdict | undefined {
    return this.verdict;
  }

  add(round: number, phase: MetricPhase, values: MetricValues): void {
    if (this.verdict || phase !== this.rule.phase || round < this.firstRound) return;
    this.pending.set(round, { ...this.pending.get(round), ...values });
  }

  /** Judges the rounds up to `round` (all of them: Infinity) that reported values of the rule's phase, in order. */
  closeThrough(round: number): StopVerdict | undefined {
    for (const [pendingRound, values] of [...this.pending].sort(([a], [b]) => a - b)) {
      if (pendingRound > round || this.verdict) break;
      this.pending.delete(pendingRound);
      this.judge(pendingRound, values);
    }
    return this.verdict;
  }

  private judge(round: number, values: MetricValues): void {
    const { metric, phase, goal, target, patience } = this.rule;
    const value = values[metric];
    if (typeof value !== 'number') {
      const reported = Object.keys(values).filter((name) => typeof values[name] === 'number').sort();
      this.verdict = {
        fail: true, round,
        reason: `The stop rule's metric "${metric}" is not among the numeric ${phase} metrics this run reports ` +
          `(${reported.length > 0 ? reported.join(', ') : 'none'}); stopped after round ${round}.`,
      };
      return;
    }
    const label = `${metric} (${phase})`;
    if (target !== null && (goal === MetricGoal.MAXIMIZE ? value >= target : value <= target)) {
      this.verdict = { stop: true, round, reason: `Stopped early after round ${round}: ${label} reached the target ${target} (${value}).` };
      return;
    }
    const minDelta = this.rule.minDelta ?? 0;
    const improved = !this.best || (goal === MetricGoal.MAXIMIZE ? value > this.best.value + minDelta : value < this.best.value - minDelta);
    if (improved) {
      this.best = { round, value };
      this.roundsWithoutImprovement = 0;
    } else {
      this.roundsWithoutImprovement += 1;
    }
    if (patience !== null && this.roundsWithoutImprovement >= patience) {
      this.verdict = {
        stop: true, round,
        reason: `Stopped early after round ${round}: ${label} did not improve on ${this.best!.value} (round ${this.best!.round}) ` +
          `by more than ${minDelta} for ${patience} round${patience === 1 ? '' : 's'}.`,
      };
    }
  }
}

/** The round whose `values` are best under the rule's goal (the earliest of equals), if any. */
export function bestRound(rule: StopRule, valueByRound: ReadonlyMap<number, number>): number | undefined {
  let best: { round: number; value: number } | undefined;
  for (const [round, value] of [...valueByRound].sort(([a], [b]) => a - b)) {
    if (!best || (rule.goal === MetricGoal.MAXIMIZE ? value > best.value : value < best.value)) best = { round, value };
  }
  return best?.round;
}
