import { Types } from 'mongoose';
import { badUserInput, conflict, isDuplicateKeyError, type FieldViolation } from '../../errors.js';
import { findPages, type Page, type PageArgs } from '../../graphql/connection.js';
import type { CreateTrainingConfigInput } from './training-config.inputs.js';
import { TrainingConfigModel, type RunConfig, type TrainingConfig } from './training-config.model.js';

/** The original design's ranges. */
export const CONFIG_LIMITS = {
  rounds: { min: 1, max: 100 },
  clients: { min: 2, max: 1000 },
  learningRate: { min: 0.001, max: 1.0, default: 0.01 },
  batchSize: { min: 1, max: 512, default: 32 },
} as const;
const MAX_NAME_LENGTH = 100;
const MAX_MODEL_TYPE_LENGTH = 100;
const MAX_RUN_CONFIG_KEYS = 200;
const SAVE_ATTEMPTS = 10;

export class TrainingConfigService {
  /** Saves the next version of the named config; the unique index settles concurrent saves. */
  async create(projectId: Types.ObjectId, creatorId: string, input: CreateTrainingConfigInput): Promise<TrainingConfig> {
    const fields = checkedConfig(input);
    for (let attempt = 0; attempt < SAVE_ATTEMPTS; attempt += 1) {
      const latest = await TrainingConfigModel.findOne({ projectId, name: fields.name }).sort({ version: -1 }).lean<TrainingConfig>().exec();
      try {
        const saved = await TrainingConfigModel.create({
          ...fields, projectId, version: (latest?.version ?? 0) + 1, createdById: new Types.ObjectId(creatorId),
        });
        return saved.toObject();
      } catch (error) {
        if (!isDuplicateKeyError(error)) throw error;
      }
    }
    throw conflict(`Too many concurrent saves of "${fields.name}": try again.`);
  }

  /** A page of configs for each project, by project id. */
  pagesByProject(projectIds: readonly Types.ObjectId[], args: PageArgs): Promise<Map<string, Page<TrainingConfig>>> {
    return findPages(TrainingConfigModel, 'projectId', projectIds, {}, args);
  }
}

function checkedConfig(input: CreateTrainingConfigInput) {
  const violations: FieldViolation[] = [];
  const name = input.name.trim();
  if (name.length < 1 || name.length > MAX_NAME_LENGTH) {
    violations.push({ field: 'name', message: `must be 1 to ${MAX_NAME_LENGTH} characters` });
  }
  const inRange = (field: keyof typeof CONFIG_LIMITS, value: number, integer: boolean) => {
    const { min, max } = CONFIG_LIMITS[field];
    if ((integer && !Number.isInteger(value)) || !(value >= min && value <= max)) {
      violations.push({ field, message: `must be ${integer ? 'an integer ' : ''}from ${min} to ${max}` });
    }
  };
  const learningRate = input.learningRate ?? CONFIG_LIMITS.learningRate.default;
  const batchSize = input.batchSize ?? CONFIG_LIMITS.batchSize.default;
  inRange('rounds', input.rounds, true);
  inRange('clients', input.clients, true);
  inRange('learningRate', learningRate, false);
  inRange('batchSize', batchSize, true);
  const modelType = input.modelType?.trim() || null;
  if (modelType && modelType.length > MAX_MODEL_TYPE_LENGTH) {
    violations.push({ field: 'modelType', message: `must be at most ${MAX_MODEL_TYPE_LENGTH} characters` });
  }
  const runConfig = checkedRunConfig(input.runConfig ?? {}, violations);
  if (violations.length > 0) throw badUserInput(violations);
  return { name, rounds: input.rounds, clients: input.clients, modelType, learningRate, batchSize, runConfigJson: JSON.stringify(runConfig) };
}

function checkedRunConfig(value: Record<string, unknown>, violations: FieldViolation[]): RunConfig {
  const entries = Object.entries(value);
  if (entries.length > MAX_RUN_CONFIG_KEYS) {
    violations.push({ field: 'runConfig', message: `may have at most ${MAX_RUN_CONFIG_KEYS} keys` });
  }
  for (const [key, item] of entries) {
    if (key.trim() === '' || key.startsWith('$') || key.includes('\0')) {
      violations.push({ field: 'runConfig', message: `key "${key}" is not a valid run-config key` });
    } else if (!(typeof item === 'string' || typeof item === 'boolean' || (typeof item === 'number' && Number.isFinite(item)))) {
      violations.push({ field: 'runConfig', message: `"${key}" must be a string, a number or a boolean` });
    }
  }
  return value as RunConfig;
}
