import { GraphQLJSONObject } from 'graphql-scalars';
import { Field, Float, ID, InputType, Int } from 'type-graphql';

@InputType()
export class CreateTrainingConfigInput {
  @Field(() => ID)
  projectId!: string;

  @Field(() => String)
  name!: string;

  @Field(() => Int, { description: '1 to 100; becomes the run-config key num-server-rounds.' })
  rounds!: number;

  @Field(() => Int, { description: '2 to 1000: the number of SuperNodes (data partitions).' })
  clients!: number;

  @Field(() => String, { nullable: true, description: 'Becomes model-type when the app declares it.' })
  modelType?: string | null;

  @Field(() => Float, { nullable: true, description: '0.001 to 1.0, default 0.01; becomes learning-rate when declared.' })
  learningRate?: number | null;

  @Field(() => Int, { nullable: true, description: '1 to 512, default 32; becomes batch-size when declared.' })
  batchSize?: number | null;

  @Field(() => GraphQLJSONObject, { nullable: true, description: 'Further run-config overrides: strings, numbers or booleans.' })
  runConfig?: Record<string, unknown> | null;
}
