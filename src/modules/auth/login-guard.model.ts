import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';

/**
 * Failed sign-ins per account (or per unknown name, so that locking says nothing about
 * whether an account exists). Kept in the database so that the lock holds across restarts
 * and instances.
 */
@modelOptions({ schemaOptions: { collection: 'login_guards' } })
@index({ key: 1 }, { unique: true })
export class LoginGuard {
  @prop({ required: true })
  key!: string;

  @prop({ type: () => [Date], default: [] })
  failures!: Date[];

  @prop({ type: Date, default: null })
  lockedUntil!: Date | null;
}

export const LoginGuardModel = getModelForClass(LoginGuard);
