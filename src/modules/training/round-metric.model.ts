import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';
import { Field, Int, ObjectType, registerEnumType } from 'type-graphql';

export enum MetricPhase {
  TRAIN = 'TRAIN',
  EVALUATE = 'EVALUATE',
  SERVER_EVALUATE = 'SERVER_EVALUATE',
}
registerEnumType(MetricPhase, { name: 'MetricPhase' });

export type MetricValues = Record<string, string | number | boolean>;

/** One round's aggregated metrics of one phase; stored once (a replayed event changes nothing). */
@ObjectType()
@modelOptions({ schemaOptions: { collection: 'round_metrics' } })
@index({ jobId: 1, round: 1, phase: 1 }, { unique: true })
export class RoundMetric {
  readonly _id!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  jobId!: Types.ObjectId;

  @Field(() => Int, { description: '0 for an initial evaluation.' })
  @prop({ required: true })
  round!: number;

  @Field(() => MetricPhase)
  @prop({ required: true, enum: MetricPhase, type: () => String })
  phase!: MetricPhase;

  /** JSON text: metric names may contain dots. */
  @prop({ required: true })
  valuesJson!: string;

  @Field(() => Date)
  @prop({ required: true })
  recordedAt!: Date;
}

export const RoundMetricModel = getModelForClass(RoundMetric);
