import DataLoader from 'dataloader';
import type { Types } from 'mongoose';

interface FindableModel {
  find(filter: object): { lean<R>(): { exec(): Promise<R> } };
}

type Identified = { _id: Types.ObjectId };

/**
 * The batch size of reads that gather the records of many parents at once (a grouped load): all
 * in the first reply (up to its 16 MiB), not in pages of 101 with a getMore each, so the commands
 * an operation costs do not grow with how many parents it shows.
 */
export const ALL_IN_ONE_REPLY = 1_000_000;

/** Batches and caches every `load(id)` of one request; the batch joins the process-wide reads of `sharedReader`. */
export function byIdLoader<T extends Identified>(model: FindableModel): DataLoader<string, T | null> {
  return new DataLoader((ids) => sharedReader<T>(model).loadMany(ids));
}

/** One record by id, read together with every other read of this model asked for in the same turn. */
export function readById<T extends Identified>(model: FindableModel, id: string): Promise<T | null> {
  return sharedReader<T>(model).load(id);
}

const OBJECT_ID = /^[0-9a-f]{24}$/i;
const readers = new WeakMap<FindableModel, DataLoader<string, unknown>>();

/**
 * Reads by id for the whole process: the ids that every operation asks for during one turn of
 * the event loop go out as one command, so a thousand subscribers authorizing against one job at
 * once cost a few reads, not three thousand. Nothing is cached: each read is sent after it was
 * asked for, so it sees every write that finished before (streams rely on that: they subscribe,
 * then read). Callers share the documents, so they are frozen.
 */
function sharedReader<T extends Identified>(model: FindableModel): DataLoader<string, T | null> {
  let reader = readers.get(model);
  if (!reader) {
    reader = new DataLoader<string, unknown>(async (ids) => {
      // One malformed id must not fail the reads it was sent with: it names no record.
      const unique = [...new Set(ids)].filter((id) => OBJECT_ID.test(id));
      if (unique.length === 0) return ids.map(() => null);
      // FerretDB on SQLite looks up a lone `_id` by its index, but scans the collection for `$in`.
      const filter = unique.length === 1 ? { _id: unique[0] } : { _id: { $in: unique } };
      const docs = await model.find(filter).lean<T[]>().exec();
      const byId = new Map(docs.map((doc) => [doc._id.toHexString(), deepFreeze(doc)]));
      return ids.map((id) => byId.get(id.toLowerCase()) ?? null);
    }, { cache: false, batchScheduleFn: (send) => setImmediate(send), maxBatchSize: 1000 });
    readers.set(model, reader);
  }
  return reader as DataLoader<string, T | null>;
}

/** Freezes plain objects and arrays all the way down (ObjectIds, Dates and buffers are left as they are). */
function deepFreeze<T>(value: T): T {
  if (Array.isArray(value) || (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype)) {
    for (const child of Object.values(value as object)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
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
