import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';

/**
 * One failed sign-in for an account (or for an unknown name, so that locking reveals nothing
 * about which accounts exist). One document per failure: inserts never lose a concurrent count.
 */
@modelOptions({ schemaOptions: { collection: 'login_failures' } })
@index({ key: 1, at: -1 })
export class LoginFailure {
  @prop({ required: true })
  key!: string;

  @prop({ required: true })
  at!: Date;
}

export const LoginFailureModel = getModelForClass(LoginFailure);
