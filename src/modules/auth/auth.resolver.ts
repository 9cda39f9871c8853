import { Arg, Ctx, Mutation, Resolver } from 'type-graphql';
import type { Context } from '../../app/context.js';
import { requireViewer } from '../projects/project.policy.js';
import { AuthPayload } from './auth-payload.model.js';
import { LoginInput, RegisterInput } from './auth.inputs.js';

/** The answer of a sign-in belongs to the user signed in: they may read their own email in it. */
function signedIn(ctx: Context, payload: AuthPayload): AuthPayload {
  ctx.signedInAs = payload.user._id.toHexString();
  return payload;
}

@Resolver()
export class AuthResolver {
  @Mutation(() => AuthPayload)
  async register(@Arg('input', () => RegisterInput) input: RegisterInput, @Ctx() ctx: Context): Promise<AuthPayload> {
    return signedIn(ctx, await ctx.services.auth.register(input, ctx.clientAddress));
  }

  @Mutation(() => AuthPayload)
  async login(@Arg('input', () => LoginInput) input: LoginInput, @Ctx() ctx: Context): Promise<AuthPayload> {
    return signedIn(ctx, await ctx.services.auth.login(input, ctx.clientAddress));
  }

  @Mutation(() => AuthPayload, { description: 'Rotates: the old refresh token dies.' })
  async refreshToken(@Arg('refreshToken', () => String) refreshToken: string, @Ctx() ctx: Context): Promise<AuthPayload> {
    return signedIn(ctx, await ctx.services.auth.refresh(refreshToken, ctx.clientAddress));
  }

  @Mutation(() => Boolean, { description: 'Ends the sign-in that the refresh token belongs to, with its access tokens and open sockets.' })
  logout(@Arg('refreshToken', () => String) refreshToken: string, @Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.auth.logout(refreshToken);
  }

  @Mutation(() => Boolean, {
    description: 'Deletes the signed-in user: their solo projects go with them; refused (CONFLICT) while they are the last owner ' +
      'of a project that has other members. Ends every session, token and subscription.',
  })
  async deleteAccount(@Arg('password', () => String) password: string, @Ctx() ctx: Context): Promise<boolean> {
    await ctx.services.auth.deleteAccount(requireViewer(ctx), password, ctx.clientAddress);
    return true;
  }
}
