import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';

/** An account locked after too many failed sign-ins; in the database, so every instance sees it. */
@modelOptions({ schemaOptions: { collection: 'login_locks' } })
@index({ key: 1 }, { unique: true })
export class LoginLock {
  @prop({ required: true })
  key!: string;

  @prop({ required: true })
  lockedUntil!: Date;
}

export const LoginLockModel = getModelForClass(LoginLock);
