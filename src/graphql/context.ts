import type DataLoader from 'dataloader';
import type { Logger } from '../logger.js';
import type { Services } from '../services.js';
import type { Viewer } from '../modules/auth/token.service.js';
import type { User } from '../modules/users/user.model.js';

export interface Loaders {
  user: DataLoader<string, User | null>;
}

/** What every resolver receives, on HTTP and graphql-ws alike. Loaders live for one operation. */
export interface Context {
  requestId: string;
  logger: Logger;
  viewer: Viewer | undefined;
  services: Services;
  loaders: Loaders;
}

export function createContext(base: Omit<Context, 'loaders'>): Context {
  return { ...base, loaders: { user: base.services.users.createLoader() } };
}
