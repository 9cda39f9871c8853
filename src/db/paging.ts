import { Types, type Model } from 'mongoose';
import { badUserInput } from '../errors.js';

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

/** What a client asks of a Relay connection. */
export interface PageRequest { first?: number | null; after?: string | null }
export interface Edge<T> { node: T; cursor: string }
export interface Page<T> { edges: Edge<T>[]; pageInfo: { hasNextPage: boolean; endCursor: string | null }; totalCount: number }

interface Sortable { _id: Types.ObjectId; createdAt: Date }

const NEWEST_FIRST = { createdAt: -1, _id: -1 } as const;

/**
 * Newest first, by (createdAt, _id): a cursor names a position in that order, so pages stay
 * stable while records are added.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any typegoose model
export async function findPage<T extends Sortable>(model: Model<any>, filter: object, args: PageRequest): Promise<Page<T>> {
  const first = pageSize(args);
  const [nodes, totalCount] = await Promise.all([
    model.find(withCursor(filter, args)).sort(NEWEST_FIRST).limit(first + 1).lean<T[]>().exec(),
    model.countDocuments(filter).exec(),
  ]);
  return pageOf(nodes, first, totalCount);
}

/**
 * findPage for many groups at once (the jobs of each project on a page of projects), in a few
 * commands rather than two per group: one count per group in one aggregation, then the newest
 * records of every group still short of a page, newest first, (first + 1) × groups at a time.
 * Each round fills at least one group, and usually all: records a group has beyond its page are
 * read at most once.
 */
export async function findPages<T extends Sortable>(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any typegoose model
  model: Model<any>, groupField: keyof T & string, groupIds: readonly Types.ObjectId[], filter: object, args: PageRequest,
): Promise<Map<string, Page<T>>> {
  const first = pageSize(args);
  const counts = await model.aggregate<{ _id: Types.ObjectId; count: number }>([
    { $match: { ...filter, [groupField]: { $in: groupIds } } },
    { $group: { _id: `$${groupField}`, count: { $sum: 1 } } },
  ]).exec();
  const totals = new Map(counts.map(({ _id, count }) => [_id.toHexString(), count]));
  const found = new Map<string, T[]>(groupIds.map((id) => [id.toHexString(), []]));
  const unfilled = () => groupIds.filter((id) => found.get(id.toHexString())!.length < Math.min(first + 1, totals.get(id.toHexString()) ?? 0));
  let pending = unfilled();
  let olderThan: T | undefined;
  while (pending.length > 0) {
    const limit = (first + 1) * pending.length;
    const batch = await model.find(withCursor({ ...filter, [groupField]: { $in: pending } }, args, olderThan))
      .sort(NEWEST_FIRST).limit(limit).batchSize(limit).lean<T[]>().exec(); // all in the first reply
    for (const record of batch) {
      const group = found.get((record[groupField] as Types.ObjectId).toHexString())!;
      if (group.length <= first) group.push(record);
    }
    if (batch.length < limit) break; // every pending group has had all its records
    olderThan = batch.at(-1);
    pending = unfilled();
  }
  return new Map([...found].map(([id, nodes]) => [id, pageOf(nodes, first, totals.get(id) ?? 0)]));
}

function pageSize(args: PageRequest): number {
  const first = args.first ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(first) || first < 1 || first > MAX_PAGE_SIZE) {
    throw badUserInput([{ field: 'first', message: `must be from 1 to ${MAX_PAGE_SIZE}` }]);
  }
  return first;
}

/** `filter`, narrowed to records after the `after` cursor and after the record `olderThan`. */
function withCursor(filter: object, args: PageRequest, olderThan?: Sortable): object {
  const positions = [...args.after ? [decodeCursor(args.after)] : [], ...olderThan ? [olderThan] : []];
  return positions.length === 0 ? filter : { $and: [filter, ...positions.map(after)] };
}

function pageOf<T extends Sortable>(nodes: T[], first: number, totalCount: number): Page<T> {
  const edges = nodes.slice(0, first).map((node) => ({ node, cursor: encodeCursor(node) }));
  return { edges, pageInfo: { hasNextPage: nodes.length > first, endCursor: edges.at(-1)?.cursor ?? null }, totalCount };
}

function encodeCursor(node: Sortable): string {
  return Buffer.from(`${node.createdAt.toISOString()}|${node._id.toHexString()}`).toString('base64url');
}

function decodeCursor(cursor: string): Sortable {
  const [time, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  const createdAt = new Date(time ?? '');
  if (!id || !/^[0-9a-f]{24}$/.test(id) || Number.isNaN(createdAt.getTime())) {
    throw badUserInput([{ field: 'after', message: 'is not a cursor from this connection' }]);
  }
  return { createdAt, _id: new Types.ObjectId(id) };
}

/** Records that come after `position` newest first. */
function after({ createdAt, _id }: Sortable): object {
  return { $or: [{ createdAt: { $lt: createdAt } }, { createdAt, _id: { $lt: _id } }] };
}
