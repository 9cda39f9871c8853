import { Types } from 'mongoose';
import { badUserInput } from '../errors.js';

/** An ObjectId as text (24 hex digits). */
export const OBJECT_ID_TEXT = /^[0-9a-f]{24}$/i;

/** Turns an `ID` argument into an ObjectId; a malformed one is BAD_USER_INPUT naming the argument. */
export function parseId(value: string, field: string): Types.ObjectId {
  if (!OBJECT_ID_TEXT.test(value)) {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    throw badUserInput([{ field, message: `"${shown}" is not a valid id` }]);
  }
  return new Types.ObjectId(value);
}
