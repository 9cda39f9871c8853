import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';
import { registerEnumType } from 'type-graphql';

export enum TrainingJobStatus {
  QUEUED = 'QUEUED',
  STARTING = 'STARTING',
  RUNNING = 'RUNNING',
  COMPLETED = 'COMPLETED',
  FAILED = 'FAILED',
  CANCELLED = 'CANCELLED',
}
registerEnumType(TrainingJobStatus, { name: 'TrainingJobStatus' });

/** A job in one of these may still use its app and config. */
export const UNFINISHED_STATUSES = [TrainingJobStatus.QUEUED, TrainingJobStatus.STARTING, TrainingJobStatus.RUNNING];

/** One launch of a Flower App with a training configuration. */
@modelOptions({ schemaOptions: { collection: 'training_jobs', timestamps: true } })
@index({ status: 1, createdAt: -1 })
@index({ projectId: 1, createdAt: -1 })
export class TrainingJob {
  readonly _id!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  projectId!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  appId!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  configId!: Types.ObjectId;

  @prop({ required: true, enum: TrainingJobStatus, type: () => String })
  status!: TrainingJobStatus;

  @prop({ required: true, type: () => Types.ObjectId })
  createdById!: Types.ObjectId;

  readonly createdAt!: Date;
}

export const TrainingJobModel = getModelForClass(TrainingJob);
