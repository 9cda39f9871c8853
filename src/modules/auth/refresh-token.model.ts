import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';

/**
 * One rotation of a refresh token. Tokens of one sign-in share a `familyId`; only the
 * SHA-256 of the token is stored.
 */
@modelOptions({ schemaOptions: { collection: 'refresh_tokens', timestamps: { createdAt: true, updatedAt: false } } })
@index({ tokenHash: 1 }, { unique: true })
@index({ familyId: 1 })
@index({ issuedFor: 1 }, { unique: true })
@index({ userId: 1 }) // account deletion removes a user's tokens
export class RefreshToken {
  readonly _id!: Types.ObjectId;

  @prop({ required: true })
  tokenHash!: string;

  @prop({ required: true })
  familyId!: string;

  /** `sign-in:<familyId>` or `rotation:<id of the token it replaced>`; unique, so a token is rotated once. */
  @prop({ required: true })
  issuedFor!: string;

  @prop({ required: true, type: () => Types.ObjectId })
  userId!: Types.ObjectId;

  @prop({ required: true })
  expiresAt!: Date;

  /** Set after this token was exchanged for the next one. */
  @prop({ type: Date, default: null })
  rotatedAt!: Date | null;

  /** Set on the whole family by logout or by reuse detection. */
  @prop({ type: Date, default: null })
  revokedAt!: Date | null;
}

export const RefreshTokenModel = getModelForClass(RefreshToken);
