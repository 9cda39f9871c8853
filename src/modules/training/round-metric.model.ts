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

/** What a round's metrics say; kept in round_metrics and, for each phase's newest, on the job. */
@ObjectType() // only as RoundMetric's base: unreachable types stay out of the schema
export class MetricRecord {
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

/** One round's aggregated metrics of one phase; stored once (a replayed event changes nothing). */
@ObjectType()
@modelOptions({ schemaOptions: { collection: 'round_metrics' } })
@index({ jobId: 1, round: 1, phase: 1 }, { unique: true })
export class RoundMetric extends MetricRecord {
  readonly _id!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  jobId!: Types.ObjectId;
}

export const RoundMetricModel = getModelForClass(RoundMetric);

const PHASE_ORDER = [MetricPhase.TRAIN, MetricPhase.EVALUATE, MetricPhase.SERVER_EVALUATE];

/**
 * Each phase's newest metrics, kept on the job as JSON text. Text rather than subdocuments: the
 * embedded FerretDB reads whole documents on every query, and it read jobs with three metric
 * subdocuments 3–4 times slower than with the same in one string.
 */
export function latestMetricsToJson(metrics: readonly MetricRecord[]): string {
  return JSON.stringify(metrics.map(({ round, phase, valuesJson, recordedAt }) => ({ round, phase, valuesJson, recordedAt })));
}

export function latestMetricsFromJson(json: string): MetricRecord[] {
  return (JSON.parse(json) as Array<MetricRecord & { recordedAt: string }>).map((metric) => ({ ...metric, recordedAt: new Date(metric.recordedAt) }));
}

/** Each phase's most recent round among `metrics`, in phase order. */
export function latestOfEachPhase(metrics: readonly MetricRecord[]): MetricRecord[] {
  const latest = new Map<MetricPhase, MetricRecord>();
  for (const metric of metrics) {
    const kept = latest.get(metric.phase);
    if (!kept || metric.round >= kept.round) latest.set(metric.phase, metric);
  }
  return PHASE_ORDER.flatMap((phase) => latest.get(phase) ?? []);
}
