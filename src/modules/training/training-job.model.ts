import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';
import { Field, Float, Int, ObjectType, registerEnumType } from 'type-graphql';
import { ProjectRecord } from '../projects/project-record.model.js';
import { StopRule } from './stop-rule.js';

export enum TrainingJobStatus {
  QUEUED = 'QUEUED',
  STARTING = 'STARTING',
  RUNNING = 'RUNNING',
  COMPLETED = 'COMPLETED',
  FAILED = 'FAILED',
  CANCELLED = 'CANCELLED',
}
registerEnumType(TrainingJobStatus, { name: 'TrainingJobStatus' });

export enum FederationKind {
  LOCAL = 'LOCAL',
  REMOTE = 'REMOTE',
  SIMULATION = 'SIMULATION',
}
registerEnumType(FederationKind, {
  name: 'FederationKind',
  valuesConfig: {
    SIMULATION: { description: "Flower's Simulation Engine on the Pollen host: `clients` virtual SuperNodes (2 to 1000)." },
  },
});

/** A job in one of these may still use its app and config. */
export const UNFINISHED_STATUSES = [TrainingJobStatus.QUEUED, TrainingJobStatus.STARTING, TrainingJobStatus.RUNNING];
export const FINISHED_STATUSES = [TrainingJobStatus.COMPLETED, TrainingJobStatus.FAILED, TrainingJobStatus.CANCELLED];

export function isFinished(status: TrainingJobStatus): boolean {
  return FINISHED_STATUSES.includes(status);
}

/** Which Pollen instance runs a job, until when; renewed while it runs. */
export class Lease {
  @prop({ required: true })
  owner!: string;

  @prop({ required: true })
  expiresAt!: Date;
}

/** One launch of a Flower App with a training configuration. */
@ObjectType()
@modelOptions({ schemaOptions: { collection: 'training_jobs', timestamps: true } })
@index({ status: 1, createdAt: -1 })
// The whole order of a page (db/paging.ts): no sort of equal times in memory, on MongoDB nor on the embedded store.
@index({ projectId: 1, createdAt: -1, _id: -1 })
@index({ parentId: 1, createdAt: 1 })
export class TrainingJob extends ProjectRecord {
  @prop({ required: true, type: () => Types.ObjectId })
  appId!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  configId!: Types.ObjectId;

  @Field(() => TrainingJobStatus)
  @prop({ required: true, enum: TrainingJobStatus, type: () => String })
  status!: TrainingJobStatus;

  /** Why it failed or was cancelled; a queued job's reason is worked out when read. */
  @prop({ type: () => String, default: null })
  statusReason!: string | null;

  @Field(() => FederationKind)
  @prop({ required: true, enum: FederationKind, type: () => String, default: FederationKind.LOCAL })
  federation!: FederationKind;

  @Field(() => Int, { description: 'SuperNodes (and data partitions) the run uses.' })
  @prop({ required: true })
  clients!: number;

  @Field(() => Int, { nullable: true, description: 'The last round that produced metrics.' })
  @prop({ type: () => Number, default: null })
  currentRound!: number | null;

  @Field(() => Int)
  @prop({ required: true })
  totalRounds!: number;

  /**
   * Each phase's newest metrics (see latestMetricsToJson), copied here as they arrive, so that a
   * page of jobs shows them without reading round_metrics.
   */
  @prop({ required: true, default: '[]' })
  latestMetricsJson!: string;

  /** JSON text of the run-config overrides passed to Flower (keys may contain dots). */
  @prop({ required: true })
  runConfigJson!: string;

  /** Stops the run early; null without a rule. */
  @Field(() => StopRule, { nullable: true })
  @prop({ type: () => StopRule, _id: false, default: null })
  stopRule!: StopRule | null;

  /** How many of the latest rounds' checkpoints are kept, besides BEST and FINAL. */
  @prop({ required: true, default: 3 })
  keepCheckpoints!: number;

  @Field(() => Float, { description: "Bytes the job's kept checkpoints take." })
  @prop({ required: true, default: 0 })
  checkpointsSizeBytes!: number;

  /** The job this one was forked from, and the round of its checkpoint it started from. */
  @prop({ type: () => Types.ObjectId, default: null })
  parentId!: Types.ObjectId | null;

  @Field(() => Int, { nullable: true, description: "The parent's round whose model this job started from." })
  @prop({ type: () => Number, default: null })
  parentRound!: number | null;

  /** The parent's checkpoint a fork starts from; kept as long as the fork has not finished. */
  @prop({ type: () => Types.ObjectId, default: null })
  initialCheckpointId!: Types.ObjectId | null;

  @Field(() => String, { nullable: true, description: "Flower's id for the run, once submitted." })
  @prop({ type: () => String, default: null })
  flowerRunId!: string | null;

  @prop({ type: () => Lease, _id: false, default: null })
  lease!: Lease | null;

  /** Set by cancelTraining on a job that a runner already holds; the runner stops it. */
  @prop({ type: () => Date, default: null })
  cancelRequestedAt!: Date | null;

  @prop({ required: true, type: () => Types.ObjectId })
  createdById!: Types.ObjectId;

  @Field(() => Date)
  readonly createdAt!: Date;

  readonly updatedAt!: Date;

  @Field(() => Date, { nullable: true })
  @prop({ type: () => Date, default: null })
  startedAt!: Date | null;

  @Field(() => Date, { nullable: true })
  @prop({ type: () => Date, default: null })
  finishedAt!: Date | null;
}

export const TrainingJobModel = getModelForClass(TrainingJob);
