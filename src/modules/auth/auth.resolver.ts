import { Arg, Ctx, Mutation, Resolver } from 'type-graphql';
import type { Context } from '../../graphql/context.js';
import { AuthPayload } from './auth-payload.model.js';
import { LoginInput, RegisterInput } from './auth.inputs.js';

@Resolver()
export class AuthResolver {
  @Mutation(() => AuthPayload)
  register(@Arg('input', () => RegisterInput) input: RegisterInput, @Ctx() ctx: Context): Promise<AuthPayload> {
    return ctx.services.auth.register(input);
  }

  @Mutation(() => AuthPayload)
  login(@Arg('input', () => LoginInput) input: LoginInput, @Ctx() ctx: Context): Promise<AuthPayload> {
    return ctx.services.auth.login(input);
  }

  @Mutation(() => AuthPayload, { description: 'Rotates: the old refresh token dies.' })
  refreshToken(@Arg('refreshToken', () => String) refreshToken: string, @Ctx() ctx: Context): Promise<AuthPayload> {
    return ctx.services.auth.refresh(refreshToken);
  }

  @Mutation(() => Boolean, { description: 'Ends the sign-in that the refresh token belongs to.' })
  logout(@Arg('refreshToken', () => String) refreshToken: string, @Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.auth.logout(refreshToken);
  }
}
