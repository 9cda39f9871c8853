import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';

/**
 * One sign-in: what its access tokens (claim `sid`) and its family of refresh tokens belong to.
 * Each request reads it by `_id`, so that signing out, a stolen refresh token and a deleted
 * account end every token of the sign-in at once, not when the access token expires.
 */
@modelOptions({ schemaOptions: { collection: 'sessions', timestamps: { createdAt: true, updatedAt: false } } })
@index({ userId: 1 })
export class Session {
  readonly _id!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  userId!: Types.ObjectId;

  /** Set by logout, by refresh-token reuse and by account deletion. */
  @prop({ type: Date, default: null })
  endedAt!: Date | null;
}

export const SessionModel = getModelForClass(Session);
