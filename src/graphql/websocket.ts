import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { GraphQLError, type ExecutionArgs, type GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import type { Logger } from '../logger.js';
import { TokenService, type Viewer } from '../modules/auth/token.service.js';
import type { Services } from '../services.js';
import { createContext, type Context } from './context.js';
import { ValidDocumentCache } from './document-cache.js';
import { maskError, reportError } from './errors.js';
import { assertWithinLimits, type QueryLimits } from './limits.js';
import { sharedSubscribe } from './shared-subscribe.js';

/** Close code graphql-ws uses for "Forbidden"; clients treat it as "sign in again". */
const CLOSE_FORBIDDEN = 4403;

type SocketState = {
  viewer?: Viewer;
  /** Each running operation's context, for logging its errors with its request id. */
  operations?: Map<string, Context>;
};

export interface GraphQLWebSocketServer {
  /** Closes every socket (1001 Going Away) and stops accepting new ones. */
  close(): Promise<void>;
}

/**
 * graphql-ws on the HTTP server's /graphql path. Apollo's plugins do not run here, so this
 * applies the same authentication, limits and error masking itself.
 */
export function attachGraphQLWebSocket(options: {
  httpServer: Server;
  schema: GraphQLSchema;
  services: Services;
  limits: QueryLimits;
  logger: Logger;
}): GraphQLWebSocketServer {
  const { schema, services, limits, logger } = options;
  const wsServer = new WebSocketServer({ server: options.httpServer, path: '/graphql' });
  const documents = new ValidDocumentCache(schema, { maxTokens: MAX_TOKENS, capacity: 100, maxQueryLength: 10_000 });

  const cleanup = useServer<Record<string, unknown>, SocketState>({
    schema,
    subscribe: sharedSubscribe((contextValue) => (contextValue as Context).viewer?.userId ?? ''),
    onConnect(ctx) {
      const authorization = ctx.connectionParams?.authorization;
      if (authorization === undefined || authorization === null || authorization === '') return true;
      try {
        ctx.extra.viewer = services.tokens.verifyAccessToken(String(authorization));
        return true;
      } catch {
        return false; // graphql-ws closes with 4403 Forbidden
      }
    },
    onSubscribe(ctx, id, payload) {
      const viewer = ctx.extra.viewer;
      if (viewer && TokenService.isExpired(viewer)) {
        ctx.extra.socket.close(CLOSE_FORBIDDEN, 'Forbidden: access token expired');
        return;
      }
      const requestId = randomUUID();
      let args: ExecutionArgs;
      try {
        const parsed = documents.get(payload.query);
        if ('errors' in parsed) return parsed.errors;
        const { document } = parsed;
        const operation = { schema, document, operationName: payload.operationName, variables: payload.variables };
        assertWithinLimits(operation, limits);
        const contextValue = createContext({ requestId, logger: logger.child({ requestId, transport: 'ws' }), viewer, services });
        args = { ...operation, variableValues: payload.variables, contextValue };
        (ctx.extra.operations ??= new Map()).set(id, contextValue);
      } catch (error) {
        if (error instanceof GraphQLError) return [error];
        throw error;
      }
      return args;
    },
    onNext(ctx, id, _payload, _args, result) {
      if (!result.errors) return;
      const context = ctx.extra.operations?.get(id);
      return { ...result, errors: result.errors.map((e) => reportAndMask(e, context, logger)) };
    },
    onError(ctx, id, _payload, errors) {
      const context = ctx.extra.operations?.get(id);
      return errors.map((e) => reportAndMask(e, context, logger));
    },
    onComplete(ctx, id) {
      ctx.extra.operations?.delete(id);
    },
  }, wsServer);

  return {
    async close() {
      await cleanup.dispose();
      await new Promise<void>((resolve) => wsServer.close(() => resolve()));
    },
  };
}

/** Same parser token cap as the HTTP transport. */
export const MAX_TOKENS = 20_000;

function reportAndMask(error: GraphQLError, context: Context | undefined, logger: Logger) {
  reportError(error, context?.logger ?? logger);
  return maskError(error.toJSON(), context?.requestId, error);
}
