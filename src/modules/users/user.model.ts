import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import type { Types } from 'mongoose';
import { Field, ID, ObjectType } from 'type-graphql';

@ObjectType('User')
@modelOptions({ schemaOptions: { collection: 'users', timestamps: { createdAt: true, updatedAt: false } } })
// Usernames are unique regardless of case: the index is on the lower-cased copy.
@index({ usernameKey: 1 }, { unique: true })
@index({ email: 1 }, { unique: true })
export class User {
  @Field(() => ID, { name: 'id' })
  readonly _id!: Types.ObjectId;

  @Field(() => String)
  @prop({ required: true })
  username!: string;

  @prop({ required: true })
  usernameKey!: string;

  @Field(() => String)
  @prop({ required: true })
  email!: string;

  @prop({ required: true })
  passwordHash!: string;

  @Field(() => Date)
  readonly createdAt!: Date;
}

export const UserModel = getModelForClass(User);
