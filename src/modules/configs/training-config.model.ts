import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';
import { Field, Float, Int, ObjectType } from 'type-graphql';
import { ProjectRecord } from '../projects/project-record.model.js';

export type RunConfig = Record<string, string | number | boolean>;

/** A saved, immutable set of training settings; saving under a used name makes the next version. */
@ObjectType()
@modelOptions({
  schemaOptions: { collection: 'training_configs', timestamps: { createdAt: true, updatedAt: false } },
})
@index({ projectId: 1, name: 1, version: 1 }, { unique: true })
@index({ projectId: 1, createdAt: -1 })
export class TrainingConfig extends ProjectRecord {
  @Field(() => String)
  @prop({ required: true })
  name!: string;

  @Field(() => Int)
  @prop({ required: true })
  version!: number;

  @Field(() => Int)
  @prop({ required: true })
  rounds!: number;

  @Field(() => Int)
  @prop({ required: true })
  clients!: number;

  @Field(() => String, { nullable: true })
  @prop({ type: () => String, default: null })
  modelType!: string | null;

  @Field(() => Float)
  @prop({ required: true })
  learningRate!: number;

  @Field(() => Int)
  @prop({ required: true })
  batchSize!: number;

  /** JSON text: run-config keys may contain dots, which MongoDB field names may not. */
  @prop({ required: true })
  runConfigJson!: string;

  @prop({ required: true, type: () => Types.ObjectId })
  createdById!: Types.ObjectId;

  @Field(() => Date)
  readonly createdAt!: Date;
}

export const TrainingConfigModel = getModelForClass(TrainingConfig);

export function runConfigOf(config: TrainingConfig): RunConfig {
  return JSON.parse(config.runConfigJson) as RunConfig;
}
