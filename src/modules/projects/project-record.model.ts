import { prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';
import { Field, ID, ObjectType } from 'type-graphql';

/** What every record that belongs to a project has: its id and its project. A base class only. */
@ObjectType() // never returned as such, so it stays out of the schema
export abstract class ProjectRecord {
  @Field(() => ID, { name: 'id' })
  readonly _id!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  projectId!: Types.ObjectId;
}
