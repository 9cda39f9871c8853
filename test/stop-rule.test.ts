import { describe, expect, it } from 'vitest';
import { MetricPhase } from '../src/modules/training/round-metric.model.js';
import { bestRound, checkedStopRule, MetricGoal, StopRuleTracker, type StopRuleInput } from '../src/modules/training/stop-rule.js';

const rule = (input: Partial<StopRuleInput>) => checkedStopRule({ metric: 'acc', phase: MetricPhase.EVALUATE, goal: MetricGoal.MAXIMIZE, ...input })!;

/** Feeds `values` of the rule's metric round by round (from `firstRound`), closing each; returns the verdict. */
function follow(tracker: StopRuleTracker, values: number[], firstRound = 1) {
  values.forEach((value, i) => {
    tracker.add(firstRound + i, MetricPhase.EVALUATE, { acc: value });
    tracker.closeThrough(firstRound + i);
  });
  return tracker.decided;
}

describe('stop rules', () => {
  it('stop at the first round that reaches the target, in the direction of the goal', () => {
    expect(follow(new StopRuleTracker(rule({ target: 0.9 }), 1), [0.5, 0.91, 0.95])).toEqual({
      stop: true, round: 2, reason: 'Stopped early after round 2: acc (EVALUATE) reached the target 0.9 (0.91).',
    });
    expect(follow(new StopRuleTracker(rule({ goal: MetricGoal.MINIMIZE, target: 0.2 }), 1), [0.5, 0.3, 0.2])?.round).toBe(3);
  });

  it('stop after `patience` rounds without an improvement larger than minDelta', () => {
    const tracker = new StopRuleTracker(rule({ patience: 2, minDelta: 0.01 }), 1);
    expect(follow(tracker, [0.5, 0.6, 0.605, 0.609, 0.7])).toMatchObject({ stop: true, round: 4 });
    expect(tracker.decided!.reason).toBe('Stopped early after round 4: acc (EVALUATE) did not improve on 0.6 (round 2) by more than 0.01 for 2 rounds.');
    expect(follow(new StopRuleTracker(rule({ patience: 2 }), 1), [0.5, 0.6, 0.7, 0.8])).toBeUndefined();
  });

  it('judge a round on all its parts, and only rounds from the first one the run trains', () => {
    const tracker = new StopRuleTracker(rule({ target: 0.9 }), 4);
    tracker.add(3, MetricPhase.EVALUATE, { acc: 0.99 }); // a fork's starting model, evaluated again
    tracker.add(4, MetricPhase.EVALUATE, { loss: 0.3 }); // legacy strategies report loss and metrics apart
    tracker.add(4, MetricPhase.TRAIN, { acc: 0.99 });
    tracker.add(4, MetricPhase.EVALUATE, { acc: 0.95 });
    expect(tracker.closeThrough(3)).toBeUndefined();
    expect(tracker.closeThrough(4)).toMatchObject({ stop: true, round: 4 });
  });

  it('fail when the first round with metrics of the phase lacks the metric', () => {
    const tracker = new StopRuleTracker(rule({ metric: 'f1', target: 0.9 }), 1);
    tracker.add(1, MetricPhase.EVALUATE, { acc: 0.5, loss: 1, note: 'text' });
    expect(tracker.closeThrough(Infinity)).toEqual({
      fail: true, round: 1,
      reason: 'The stop rule\'s metric "f1" is not among the numeric EVALUATE metrics this run reports (acc, loss); stopped after round 1.',
    });
    tracker.add(2, MetricPhase.EVALUATE, { f1: 0.95 });
    expect(tracker.closeThrough(Infinity)).toMatchObject({ fail: true, round: 1 }); // the first verdict stands
  });

  it('are refused at start when they cannot fire or make no sense', () => {
    const violations = (input: Partial<StopRuleInput>) => {
      try {
        rule(input);
        return [];
      } catch (error) {
        return ((error as { extensions: { violations: Array<{ field: string }> } }).extensions.violations).map((v) => v.field);
      }
    };
    expect(violations({})).toEqual(['stopWhen.target']);
    expect(violations({ patience: 0 })).toEqual(['stopWhen.patience']);
    expect(violations({ target: Number.NaN })).toEqual(['stopWhen.target']);
    expect(violations({ target: 1, minDelta: 0.1 })).toEqual(['stopWhen.minDelta']);
    expect(violations({ metric: ' ', patience: 1, minDelta: -1 })).toEqual(['stopWhen.metric', 'stopWhen.minDelta']);
  });

  it('name the best round under the goal, the earliest of equals', () => {
    const values = new Map([[0, 2.3], [1, 0.9], [2, 0.4], [3, 0.4]]);
    expect(bestRound(rule({ goal: MetricGoal.MINIMIZE, target: 0 }), values)).toBe(2);
    expect(bestRound(rule({ target: 1 }), values)).toBe(0);
    expect(bestRound(rule({ target: 1 }), new Map())).toBeUndefined();
  });
});
