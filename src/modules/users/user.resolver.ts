import { Ctx, FieldResolver, Query, Resolver, Root } from 'type-graphql';
import type { Context } from '../../app/context.js';
import { User } from './user.model.js';

@Resolver(() => User)
export class UserResolver {
  @Query(() => User, { nullable: true, description: 'The signed-in user, or null when anonymous.' })
  async me(@Ctx() ctx: Context): Promise<User | null> {
    return ctx.viewer ? ctx.loaders.user.load(ctx.viewer.userId) : null;
  }

  @FieldResolver(() => String, { nullable: true, description: 'Private: the user reads their own; everyone else gets null.' })
  email(@Root() user: User, @Ctx() ctx: Context): string | null {
    const id = user._id.toHexString();
    return id === ctx.viewer?.userId || id === ctx.signedInAs ? user.email : null;
  }
}
