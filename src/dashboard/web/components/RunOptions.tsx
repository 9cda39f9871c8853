import type { Fields } from '../forms';
import { PHASE_LABELS } from '../format';
import type { FederationKind, MetricGoal, MetricPhase, StopRuleFieldsFragment, StopRuleInput } from '../generated/graphql';
import { PHASES } from '../live/metric-store';

// The federations a run may use.
const FEDERATIONS: ReadonlyArray<{ kind: FederationKind; label: string }> = [
  { kind: 'LOCAL', label: 'Local: SuperNodes on the Pollen host' },
  { kind: 'SIMULATION', label: 'Simulation: up to 1,000 virtual clients on the Pollen host' },
  { kind: 'REMOTE', label: "Remote: the project's deployed nodes" },
];

export function FederationSelect({ defaultValue = 'LOCAL' }: { defaultValue?: FederationKind }) {
  return (
    <label>Federation
      <select name="federation" defaultValue={defaultValue}>
        {FEDERATIONS.map(({ kind, label }) => <option key={kind} value={kind}>{label}</option>)}
      </select>
    </label>
  );
}

/** The options a run (or a fork) takes besides its config: when to stop early, how many checkpoints to keep. */
export function RunOptionFields() {
  return (
    <details className="wide options">
      <summary>Early stopping and checkpoints</summary>
      <div className="grid-form">
        <label>Stop on metric<input name="stopMetric" placeholder="eval_acc" /></label>
        <label>Of phase
          <select name="stopPhase" defaultValue="EVALUATE">
            {PHASES.map((phase) => <option key={phase} value={phase}>{PHASE_LABELS[phase]}</option>)}
          </select>
        </label>
        <label>Better when it is
          <select name="stopGoal" defaultValue="MAXIMIZE">
            <option value="MAXIMIZE">higher</option>
            <option value="MINIMIZE">lower</option>
          </select>
        </label>
        <label>Stop at target<input name="stopTarget" type="number" step="any" /></label>
        <label>Or after rounds without improvement<input name="stopPatience" type="number" /></label>
        <label>Improvement of more than<input name="stopMinDelta" type="number" step="any" placeholder="0" /></label>
        <label>Latest checkpoints kept<input name="keepCheckpoints" type="number" placeholder="3" /></label>
      </div>
    </details>
  );
}

/** What RunOptionFields say, as startTraining and forkTraining take it. */
export function runOptionsFrom({ text, number }: Fields): { stopWhen: StopRuleInput | null; keepCheckpoints: number | null } {
  const stopWhen = text('stopMetric') ? {
    metric: text('stopMetric'), phase: text('stopPhase') as MetricPhase, goal: text('stopGoal') as MetricGoal,
    target: number('stopTarget'), patience: number('stopPatience'), minDelta: number('stopMinDelta'),
  } : null;
  return { stopWhen, keepCheckpoints: number('keepCheckpoints') };
}

export function describeStopRule(rule: StopRuleFieldsFragment): string {
  const better = rule.goal === 'MAXIMIZE' ? 'higher' : 'lower';
  const when = [
    rule.target !== null && rule.target !== undefined ? `it reaches ${rule.target}` : undefined,
    rule.patience ? `${rule.patience} round${rule.patience === 1 ? '' : 's'} in a row bring no improvement${rule.minDelta ? ` of more than ${rule.minDelta}` : ''}` : undefined,
  ].filter(Boolean).join(', or when ');
  return `Stops early on ${rule.metric} (${PHASE_LABELS[rule.phase]}, ${better} is better) when ${when}.`;
}
