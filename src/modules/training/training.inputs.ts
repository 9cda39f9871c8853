import { ArgsType, Field, ID, InputType } from 'type-graphql';
import { PageArgs } from '../../graphql/connection.js';
import { FederationKind, TrainingJobStatus } from './training-job.model.js';

@InputType()
export class StartTrainingInput {
  @Field(() => ID)
  appId!: string;

  @Field(() => ID)
  configId!: string;

  @Field(() => FederationKind, {
    nullable: true,
    defaultValue: FederationKind.LOCAL,
    description: "LOCAL: SuperNodes started on the Pollen host. REMOTE: the project's deployed, ONLINE nodes.",
  })
  federation?: FederationKind | null;
}

@ArgsType()
export class TrainingJobsArgs extends PageArgs {
  @Field(() => TrainingJobStatus, { nullable: true })
  status?: TrainingJobStatus | null;
}
