import { Field, Float, Int, ObjectType } from 'type-graphql';
import { MetricPhase } from './round-metric.model.js';

@ObjectType()
export class MetricPoint {
  @Field(() => Int)
  round!: number;

  @Field(() => Float)
  value!: number;
}

/** A job's metric of one phase across rounds, read from its stored round metrics (numbers only). */
@ObjectType({ description: 'One metric of one phase across rounds; only numeric values.' })
export class MetricSeries {
  @Field(() => MetricPhase)
  phase!: MetricPhase;

  @Field(() => String)
  name!: string;

  @Field(() => [MetricPoint])
  points!: MetricPoint[];
}
