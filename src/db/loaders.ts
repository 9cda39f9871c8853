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

/**
 * Batches loads that share a key (one field with the same arguments, on many parents: the jobs of
 * each project on a page) into one call of `loadMany` per tick. One instance per operation.
 */
export class GroupedLoads {
  private readonly loaders = new Map<string, DataLoader<Types.ObjectId, unknown, string>>();

  load<T>(key: string, id: Types.ObjectId, loadMany: (ids: readonly Types.ObjectId[]) => Promise<Map<string, T>>): Promise<T> {
    let loader = this.loaders.get(key);
    if (!loader) {
      loader = new DataLoader(async (ids) => {
        const found = await loadMany(ids);
        return ids.map((one) => found.get(one.toHexString()) ?? new Error(`${key}: nothing loaded for ${one.toHexString()}`));
      }, { cacheKeyFn: (one) => one.toHexString() });
      this.loaders.set(key, loader);
    }
    return loader.load(id) as Promise<T>;
  }
}
