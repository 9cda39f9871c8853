import { ArgsType, Field, Int, ObjectType, type ClassType } from 'type-graphql';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../db/paging.js';

@ObjectType()
export class PageInfo {
  @Field(() => Boolean)
  hasNextPage!: boolean;

  @Field(() => String, { nullable: true })
  endCursor!: string | null;
}

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
