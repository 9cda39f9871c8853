import { Field, ObjectType } from 'type-graphql';
import { User } from '../users/user.model.js';

/** What a sign-in returns: a short-lived access token and a rotating refresh token. */
@ObjectType()
export class AuthPayload {
  @Field(() => String)
  accessToken!: string;

  @Field(() => String)
  refreshToken!: string;

  @Field(() => Date)
  accessTokenExpiresAt!: Date;

  @Field(() => User)
  user!: User;
}
