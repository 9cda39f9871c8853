import type { Config } from './config.js';
import { AuthService } from './modules/auth/auth.service.js';
import { LoginGuardModel } from './modules/auth/login-guard.model.js';
import { RefreshTokenModel } from './modules/auth/refresh-token.model.js';
import { TokenService } from './modules/auth/token.service.js';
import { UserModel } from './modules/users/user.model.js';
import { UserService } from './modules/users/user.service.js';

/** The services a process shares; one instance of each. */
export interface Services {
  users: UserService;
  tokens: TokenService;
  auth: AuthService;
}

export function createServices(config: Config): Services {
  const users = new UserService();
  const tokens = new TokenService(config.jwtSecret, config.accessTokenTtlSeconds);
  return { users, tokens, auth: new AuthService(users, tokens, config.refreshTokenTtlSeconds) };
}

/** Every model whose indexes are created at start. */
export const MODELS = [UserModel, RefreshTokenModel, LoginGuardModel];
