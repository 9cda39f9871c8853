import { Field, ObjectType } from 'type-graphql';

/** One line of a process's output, as the API shows it (ServerApp output, Ansible output). */
@ObjectType('LogLine')
export class LogLineObject {
  @Field(() => Date)
  at!: Date;

  /** May be empty: blank lines are part of the output. */
  @Field(() => String)
  line!: string;
}
