import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { isDuplicateKeyError } from '../errors.js';

/**
 * A uniquely keyed marker. FerretDB (on SQLite) does not make a conditional update atomic: two
 * "update where revision = 3" calls can both succeed. A unique-index insert is atomic on every
 * MongoDB-wire server, so "only one caller may do X" is settled by inserting a claim for X.
 */
@modelOptions({ schemaOptions: { collection: 'claims' } })
@index({ scope: 1 })
export class Claim {
  @prop({ required: true })
  _id!: string;

  /** What the claim belongs to (a project id, ...), so it can be removed with it. */
  @prop({ required: true })
  scope!: string;

  @prop({ required: true })
  claimedAt!: Date;
}

export const ClaimModel = getModelForClass(Claim);

/**
 * True for exactly one caller per key. With `staleAfterMs`, a claim older than that is taken to
 * belong to a process that died before finishing, and may be taken over.
 */
export async function claim(key: string, scope: string, staleAfterMs?: number): Promise<boolean> {
  try {
    await ClaimModel.create({ _id: key, scope, claimedAt: new Date() });
    return true;
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
  }
  if (staleAfterMs === undefined) return false;
  const stale = await ClaimModel.deleteOne({ _id: key, claimedAt: { $lt: new Date(Date.now() - staleAfterMs) } }).exec();
  return stale.deletedCount === 1 ? claim(key, scope, staleAfterMs) : false;
}

export async function releaseClaims(scope: string): Promise<void> {
  await ClaimModel.deleteMany({ scope }).exec();
}

/** Of these keys, those claimed before `before`. */
export async function listClaims(keys: readonly string[], before: Date): Promise<string[]> {
  const claims = await ClaimModel.find({ _id: { $in: keys }, claimedAt: { $lt: before } }, { _id: 1 }).lean<Claim[]>().exec();
  return claims.map((found) => found._id);
}
