import { Ctx, Query, Resolver } from 'type-graphql';
import type { Context } from '../../graphql/context.js';
import { User } from './user.model.js';

@Resolver(() => User)
export class UserResolver {
  @Query(() => User, { nullable: true, description: 'The signed-in user, or null when anonymous.' })
  async me(@Ctx() ctx: Context): Promise<User | null> {
    return ctx.viewer ? ctx.loaders.user.load(ctx.viewer.userId) : null;
  }
}
