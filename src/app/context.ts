import { HeaderMap } from '@apollo/server';
import type DataLoader from 'dataloader';
import type { Request } from 'express';
import { GraphQLError } from 'graphql';
import { DATABASE_RETRY_AFTER_SECONDS, databaseUnavailable, isDatabaseUnavailableError } from '../errors.js';
import { byIdLoader, GroupedLoads } from '../db/loaders.js';
import { clientAddress } from '../http/request-context.js';
import type { Logger } from '../logger.js';
import type { Viewer } from '../modules/auth/token.service.js';
import { FlowerAppModel, type FlowerApp } from '../modules/apps/flower-app.model.js';
import { TrainingConfigModel, type TrainingConfig } from '../modules/configs/training-config.model.js';
import { NodeModel, type Node } from '../modules/nodes/node.model.js';
import { ProjectModel, type Project } from '../modules/projects/project.model.js';
import { TrainingJobModel, type TrainingJob } from '../modules/training/training-job.model.js';
import { UserModel, type User } from '../modules/users/user.model.js';
import type { Services } from './services.js';

/** One batched loader per relation a resolver follows; they live for one operation. */
export interface Loaders {
  user: DataLoader<string, User | null>;
  project: DataLoader<string, Project | null>;
  app: DataLoader<string, FlowerApp | null>;
  config: DataLoader<string, TrainingConfig | null>;
  job: DataLoader<string, TrainingJob | null>;
  node: DataLoader<string, Node | null>;
  /** Fields loaded for many parents at once, such as each project's page of jobs. */
  grouped: GroupedLoads;
}

/** What every resolver receives, on HTTP and graphql-ws alike. */
export interface Context {
  requestId: string;
  logger: Logger;
  viewer: Viewer | undefined;
  /** The client's IP address, for per-client rate limits. */
  clientAddress: string;
  services: Services;
  loaders: Loaders;
  /** The user a sign-in mutation of this operation signed in as: they may read their own private fields in its answer. */
  signedInAs?: string;
  /**
   * Projects this operation was let into (ids). An open subscription is checked against them again
   * whenever their members change, and ends when its viewer lost access.
   */
  authorizedProjects: Set<string>;
}

export function createContext(base: Omit<Context, 'loaders' | 'authorizedProjects'>): Context {
  return { ...base, loaders: new LazyLoaders(), authorizedProjects: new Set() };
}

/** The same operation's context with loaders of its own: each event of a subscription reads afresh. */
export function contextForEvent(context: Context): Context {
  return { ...context, loaders: new LazyLoaders() };
}

/**
 * Each loader is made on first use: a subscription's context lives as long as the subscription
 * and uses one or two of them, and thousands of subscribers each have one.
 */
class LazyLoaders implements Loaders {
  #user?: Loaders['user'];
  #project?: Loaders['project'];
  #app?: Loaders['app'];
  #config?: Loaders['config'];
  #job?: Loaders['job'];
  #node?: Loaders['node'];
  #grouped?: GroupedLoads;

  get user() { return (this.#user ??= byIdLoader<User>(UserModel)); }
  get project() { return (this.#project ??= byIdLoader<Project>(ProjectModel)); }
  get app() { return (this.#app ??= byIdLoader<FlowerApp>(FlowerAppModel)); }
  get config() { return (this.#config ??= byIdLoader<TrainingConfig>(TrainingConfigModel)); }
  get job() { return (this.#job ??= byIdLoader<TrainingJob>(TrainingJobModel)); }
  get node() { return (this.#node ??= byIdLoader<Node>(NodeModel)); }
  get grouped() { return (this.#grouped ??= new GroupedLoads()); }
}

/**
 * The GraphQL context of an HTTP request (for /graphql and the download routes alike): who its
 * Authorization header speaks for, checked against the sign-in's state. A bad, expired or ended
 * token is UNAUTHENTICATED with status 401. Where `signedLinks` allows it (downloads), a `link`
 * query parameter signed for the request's path stands in for the header (a browser's plain link).
 */
export async function contextOf(req: Request, services: Services, { signedLinks = false } = {}): Promise<Context> {
  const authorization = req.get('authorization');
  const link = signedLinks && !authorization && typeof req.query.link === 'string' ? req.query.link : undefined;
  let viewer;
  if (authorization || link) {
    try {
      viewer = link ? await services.auth.authenticateLink(link, req.path) : await services.auth.authenticate(authorization!);
    } catch (error) {
      // Apollo answers a failed context itself, without the plugins that add ids and statuses.
      if (isDatabaseUnavailableError(error)) {
        req.log.warn({ err: error }, 'database unavailable');
        const unavailable = databaseUnavailable();
        Object.assign(unavailable.extensions, { requestId: req.id, http: {
          status: 503, headers: new HeaderMap([['retry-after', String(DATABASE_RETRY_AFTER_SECONDS)]]),
        } });
        throw unavailable;
      }
      if (error instanceof GraphQLError) Object.assign(error.extensions, { requestId: req.id, http: { status: 401 } });
      throw error;
    }
  }
  return createContext({ requestId: req.id, logger: req.log, viewer, services, clientAddress: clientAddress(req) });
}
