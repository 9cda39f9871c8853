import DataLoader from 'dataloader';
import type { Types } from 'mongoose';

interface FindableModel {
  find(filter: object): { lean<R>(): { exec(): Promise<R> } };
}

/** Batches every `load(id)` of one request into a single `find({ _id: { $in } })`. */
export function byIdLoader<T extends { _id: Types.ObjectId }>(model: FindableModel): DataLoader<string, T | null> {
  return new DataLoader(async (ids) => {
    const docs = await model.find({ _id: { $in: ids } }).lean<T[]>().exec();
    const byId = new Map(docs.map((doc) => [doc._id.toHexString(), doc]));
    return ids.map((id) => byId.get(id) ?? null);
  });
}
