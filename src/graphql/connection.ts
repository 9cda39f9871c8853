import type { Model, Types } from 'mongoose';
import { ArgsType, Field, Int, ObjectType, type ClassType } from 'type-graphql';
import { badUserInput } from '../errors.js';

@ObjectType()
export class PageInfo {
  @Field(() => Boolean)
  hasNextPage!: boolean;

  @Field(() => String, { nullable: true })
  endCursor!: string | null;
}

export interface Edge<T> { node: T; cursor: string }
export interface Page<T> { edges: Edge<T>[]; pageInfo: PageInfo; totalCount: number }

/** A Relay connection type (`<Name>Connection` with `<Name>Edge`) for one node type. */
export function ConnectionType<T extends object>(name: string, nodeType: ClassType<T>) {
  @ObjectType(`${name}Edge`)
  class EdgeType {
    @Field(() => nodeType)
    node!: T;

    @Field(() => String)
    cursor!: string;
  }

  // Only its concrete subclasses are reachable, so this base never reaches the schema.
  @ObjectType(`${name}ConnectionBase`)
  abstract class ConnectionClass {
    @Field(() => [EdgeType])
    edges!: EdgeType[];

    @Field(() => PageInfo)
    pageInfo!: PageInfo;

    @Field(() => Int)
    totalCount!: number;
  }
  return ConnectionClass;
}

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

/** Query cost of a connection field: its children once per requested node. */
export function connectionComplexity({ args, childComplexity }: { args: { first?: number | null }; childComplexity: number }): number {
  return 1 + childComplexity * Math.min(Math.max(args.first ?? DEFAULT_PAGE_SIZE, 1), MAX_PAGE_SIZE);
}

@ArgsType()
export class PageArgs {
  @Field(() => Int, { nullable: true, description: `At most ${MAX_PAGE_SIZE}; ${DEFAULT_PAGE_SIZE} when omitted.` })
  first?: number | null;

  @Field(() => String, { nullable: true })
  after?: string | null;
}

interface Sortable { _id: Types.ObjectId; createdAt: Date }

/**
 * Newest first, by (createdAt, _id): a cursor names a position in that order, so pages stay
 * stable while records are added.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any typegoose model
export async function findPage<T extends Sortable>(model: Model<any>, filter: object, args: PageArgs): Promise<Page<T>> {
  const first = args.first ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(first) || first < 1 || first > MAX_PAGE_SIZE) {
    throw badUserInput([{ field: 'first', message: `must be from 1 to ${MAX_PAGE_SIZE}` }]);
  }
  const pageFilter = args.after ? { $and: [filter, afterCursor(args.after)] } : filter;
  const [nodes, totalCount] = await Promise.all([
    model.find(pageFilter).sort({ createdAt: -1, _id: -1 }).limit(first + 1).lean<T[]>().exec(),
    model.countDocuments(filter).exec(),
  ]);
  const edges = nodes.slice(0, first).map((node) => ({ node, cursor: encodeCursor(node) }));
  return { edges, pageInfo: { hasNextPage: nodes.length > first, endCursor: edges.at(-1)?.cursor ?? null }, totalCount };
}

function encodeCursor(node: Sortable): string {
  return Buffer.from(`${node.createdAt.toISOString()}|${node._id.toHexString()}`).toString('base64url');
}

function afterCursor(cursor: string): object {
  const [time, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  const createdAt = new Date(time ?? '');
  if (!id || !/^[0-9a-f]{24}$/.test(id) || Number.isNaN(createdAt.getTime())) {
    throw badUserInput([{ field: 'after', message: 'is not a cursor from this connection' }]);
  }
  return { $or: [{ createdAt: { $lt: createdAt } }, { createdAt, _id: { $lt: id } }] };
}
