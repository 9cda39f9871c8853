import { Field, ID, InputType, Int } from 'type-graphql';

@InputType()
export class RegisterNodeInput {
  @Field(() => ID)
  projectId!: string;

  @Field(() => String, { description: '1 to 64 characters; unique in the project.' })
  name!: string;

  @Field(() => String, { description: 'Host name or IP address that Pollen reaches over SSH.' })
  host!: string;

  @Field(() => String)
  sshUser!: string;

  @Field(() => Int, { nullable: true, description: 'Default 22.' })
  sshPort?: number | null;
}
