import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';
import { Field, ObjectType, registerEnumType } from 'type-graphql';

export enum MlflowMirrorStatus {
  /** Everything that happened to the job is in MLflow, or on its way. */
  UP_TO_DATE = 'UP_TO_DATE',
  /** MLflow is slow or down: updates wait in Pollen and are retried. */
  BEHIND = 'BEHIND',
  /** Some updates never reached MLflow (refused, or dropped from a full queue): the run there misses them. */
  INCOMPLETE = 'INCOMPLETE',
}
registerEnumType(MlflowMirrorStatus, { name: 'MlflowMirrorStatus' });

/** A job's mirror in MLflow (MLFLOW_TRACKING_URI): the run, and whether it has caught up. */
@ObjectType('MlflowRun')
@modelOptions({ schemaOptions: { collection: 'mlflow_runs', timestamps: { createdAt: false, updatedAt: true } } })
@index({ jobId: 1 }, { unique: true })
export class MlflowRun {
  readonly _id!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  jobId!: Types.ObjectId;

  @Field(() => String, { nullable: true, description: "MLflow's id of the run; null until MLflow has answered." })
  @prop({ type: () => String, default: null })
  runId!: string | null;

  @Field(() => String, { nullable: true, description: "The experiment: the project's name." })
  @prop({ type: () => String, default: null })
  experimentId!: string | null;

  @prop({ type: () => String, default: null })
  artifactUri!: string | null;

  @Field(() => MlflowMirrorStatus)
  @prop({ required: true, enum: MlflowMirrorStatus, type: () => String })
  status!: MlflowMirrorStatus;

  @Field(() => String, { nullable: true, description: 'Why the mirror is behind or incomplete.' })
  @prop({ type: () => String, default: null })
  detail!: string | null;

  @Field(() => Date)
  readonly updatedAt!: Date;
}

export const MlflowRunModel = getModelForClass(MlflowRun);
