import { Types } from 'mongoose';
import { badUserInput } from '../errors.js';

/** Turns an `ID` argument into an ObjectId; a malformed one is BAD_USER_INPUT naming the argument. */
export function parseId(value: string, field: string): Types.ObjectId {
  if (!/^[0-9a-f]{24}$/i.test(value)) {
    throw badUserInput([{ field, message: `"${value}" is not a valid id` }]);
  }
  return new Types.ObjectId(value);
}
