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

  /** Private: only its owner reads it (UserResolver.email). */
  @prop({ required: true })
  email!: string;

  /** Empty once the account is deleted. */
  @prop({ type: () => String, default: '' })
  passwordHash!: string;

  /**
   * Set when the account was deleted: the record stays, without email or password, so that what
   * the user made in projects they shared still says who made it.
   */
  @prop({ type: () => Date, default: null })
  deletedAt!: Date | null;

  @Field(() => Date)
  readonly createdAt!: Date;
}

export const UserModel = getModelForClass(User);
