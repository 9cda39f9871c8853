import { Types } from 'mongoose';
import { badUserInput, conflict, isDuplicateKeyError, type FieldViolation } from '../../errors.js';
import { readById } from '../../db/loaders.js';
import { findPages, type Page, type PageRequest } from '../../db/paging.js';
import { hasControlCharacters, normalizeText, textViolation } from '../../graphql/text.js';
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
/** The run config as JSON: it travels on Flower's command line and in every job. */
const MAX_RUN_CONFIG_BYTES = 16 * 1024;
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

  get(id: string): Promise<TrainingConfig | null> {
    return readById<TrainingConfig>(TrainingConfigModel, id);
  }

  async deleteAllInProject(projectId: Types.ObjectId): Promise<void> {
    await TrainingConfigModel.deleteMany({ projectId }).exec();
  }

  /** A page of configs for each project, by project id. */
  pagesByProject(projectIds: readonly Types.ObjectId[], args: PageRequest): Promise<Map<string, Page<TrainingConfig>>> {
    return findPages(TrainingConfigModel, 'projectId', projectIds, {}, args);
  }
}

function checkedConfig(input: CreateTrainingConfigInput) {
  const violations: FieldViolation[] = [];
  const name = normalizeText(input.name);
  const nameViolation = textViolation(name, 'name', { maxLength: MAX_NAME_LENGTH });
  if (nameViolation) violations.push(nameViolation);
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
  const modelType = normalizeText(input.modelType ?? '') || null;
  const modelTypeViolation = modelType ? textViolation(modelType, 'modelType', { maxLength: MAX_MODEL_TYPE_LENGTH }) : undefined;
  if (modelTypeViolation) violations.push(modelTypeViolation);
  const runConfig = checkedRunConfig(input.runConfig ?? {}, violations);
  if (violations.length > 0) throw badUserInput(violations);
  return { name, rounds: input.rounds, clients: input.clients, modelType, learningRate, batchSize, runConfigJson: JSON.stringify(runConfig) };
}

function checkedRunConfig(value: Record<string, unknown>, violations: FieldViolation[]): RunConfig {
  const entries = Object.entries(value);
  if (entries.length > MAX_RUN_CONFIG_KEYS) {
    violations.push({ field: 'runConfig', message: `may have at most ${MAX_RUN_CONFIG_KEYS} keys` });
  }
  const bytes = Buffer.byteLength(JSON.stringify(value));
  if (bytes > MAX_RUN_CONFIG_BYTES) {
    violations.push({ field: 'runConfig', message: `must be at most ${MAX_RUN_CONFIG_BYTES / 1024} KB as JSON (it is ${Math.ceil(bytes / 1024)} KB)` });
    return value as RunConfig;
  }
  for (const [key, item] of entries) {
    if (key.trim() === '' || key.startsWith('$') || hasControlCharacters(key)) {
      violations.push({ field: 'runConfig', message: `key ${JSON.stringify(key)} is not a valid run-config key` });
    } else if (!(typeof item === 'string' || typeof item === 'boolean' || (typeof item === 'number' && Number.isFinite(item)))) {
      violations.push({ field: 'runConfig', message: `"${key}" must be a string, a number or a boolean` });
    } else if (typeof item === 'string' && hasControlCharacters(item)) {
      violations.push({ field: 'runConfig', message: `"${key}" must not contain control characters or bidirectional-text controls` });
    }
  }
  return value as RunConfig;
}
