import { ArgsType, Field, ID, InputType, Int } from 'type-graphql';
import { PageArgs } from '../../graphql/connection.js';
import { StopRuleInput } from './stop-rule.js';
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

  @Field(() => StopRuleInput, { nullable: true })
  stopWhen?: StopRuleInput | null;

  @Field(() => Int, { nullable: true, description: "How many of the latest rounds' checkpoints to keep (default 3), besides BEST and FINAL." })
  keepCheckpoints?: number | null;
}

@InputType({
  description: "A new run that starts from a saved checkpoint of another job instead of the app's initial model. " +
    "Its rounds continue the parent's numbering: the first is fromRound + 1, the last fromRound + the config's rounds. " +
    "Default config: the parent's.",
})
export class ForkTrainingInput {
  @Field(() => ID)
  jobId!: string;

  @Field(() => Int)
  fromRound!: number;

  @Field(() => ID, { nullable: true })
  configId?: string | null;

  @Field(() => FederationKind, { nullable: true, description: "Default: the parent's." })
  federation?: FederationKind | null;

  @Field(() => StopRuleInput, { nullable: true })
  stopWhen?: StopRuleInput | null;

  @Field(() => Int, { nullable: true })
  keepCheckpoints?: number | null;
}

@ArgsType()
export class TrainingJobsArgs extends PageArgs {
  @Field(() => TrainingJobStatus, { nullable: true })
  status?: TrainingJobStatus | null;
}
