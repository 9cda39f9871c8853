import type { RunConfigValue } from '../apps/app-archive.js';
import type { TrainingConfig } from '../configs/training-config.model.js';
import { runConfigOf } from '../configs/training-config.model.js';

/** Config fields that become run-config keys when the app declares them (rounds always must). */
export const MAPPED_KEYS = {
  rounds: 'num-server-rounds',
  learningRate: 'learning-rate',
  batchSize: 'batch-size',
  modelType: 'model-type',
} as const;

export type RunConfigCheck =
  | { ok: true; overrides: Record<string, RunConfigValue> }
  | { ok: false; problems: string[]; declared: string[] };

/**
 * The run-config overrides a training config gives an app, checked against the keys the app
 * declares in [tool.flwr.app.config] (Flower refuses any other key) and their types.
 */
export function runConfigFor(declared: Record<string, RunConfigValue>, config: TrainingConfig): RunConfigCheck {
  const problems: string[] = [];
  const overrides: Record<string, RunConfigValue> = {};
  const offer = (key: string, value: RunConfigValue, source: string, required: boolean) => {
    if (!(key in declared)) {
      if (required) problems.push(`${source} needs the app to declare "${key}"`);
      return;
    }
    const mismatch = typeMismatch(declared[key]!, value);
    if (mismatch) problems.push(`${source}: "${key}" ${mismatch}`);
    else overrides[key] = value;
  };

  offer(MAPPED_KEYS.rounds, config.rounds, 'rounds', true);
  offer(MAPPED_KEYS.learningRate, config.learningRate, 'learningRate', false);
  offer(MAPPED_KEYS.batchSize, config.batchSize, 'batchSize', false);
  if (config.modelType !== null) offer(MAPPED_KEYS.modelType, config.modelType, 'modelType', false);
  for (const [key, value] of Object.entries(runConfigOf(config))) {
    if (!(key in declared)) problems.push(`runConfig: "${key}" is not declared by the app`);
    else offer(key, value, 'runConfig', true);
  }
  return problems.length > 0 ? { ok: false, problems, declared: Object.keys(declared).sort() } : { ok: true, overrides };
}

function typeMismatch(declaredDefault: RunConfigValue, value: RunConfigValue): string | undefined {
  const expected = describeType(declaredDefault);
  const actual = describeType(value);
  // An integer may stand for a float, not the other way round.
  if (expected === actual || (expected === 'a float' && actual === 'an integer')) return undefined;
  return `must be ${expected} like its default ${JSON.stringify(declaredDefault)}, not ${actual} (${JSON.stringify(value)})`;
}

function describeType(value: RunConfigValue): string {
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a float';
  return typeof value === 'boolean' ? 'a boolean' : 'a string';
}
