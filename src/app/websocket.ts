import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer, type WebSocket } from 'ws';
import { ErrorCode } from '../errors.js';
import type { Logger } from '../logger.js';
import { sessionsEnded } from '../modules/auth/auth.service.js';
import { TokenService, type Viewer } from '../modules/auth/token.service.js';
import type { Services } from './services.js';
import { contextForEvent, createContext, type Context } from './context.js';
import { maskError, reportError } from '../graphql/errors.js';
import type { OperationGate } from '../graphql/operation-gate.js';
import { liveSubscribe } from '../graphql/live-subscribe.js';

/** Close code graphql-ws uses for "Forbidden"; clients treat it as "sign in again". */
const CLOSE_FORBIDDEN = 4403;
/** Close code for a user past WS_MAX_SOCKETS_PER_USER (graphql-ws's "too many requests"). */
const CLOSE_TOO_MANY = 4429;
/** setTimeout's longest delay; a later expiry is checked again when it fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type SocketState = {
  viewer?: Viewer;
  /** Each running operation's context, for logging its errors with its request id. */
  operations?: Map<string, Context>;
};

export interface WebSocketLimits {
  /** Largest message a socket may send, in bytes; a longer one closes it (1009) before it is read. */
  maxPayloadBytes: number;
  maxSubscriptionsPerSocket: number;
  maxSocketsPerUser: number;
}

export interface GraphQLWebSocketServer {
  /** Closes every socket (1001 Going Away) and stops accepting new ones. */
  close(): Promise<void>;
}

/**
 * graphql-ws on the HTTP server's /graphql path. Apollo's plugins do not run here, so this applies
 * the same authentication, operation gate and error masking itself. Access is live: a socket
 * closes (4403) when its sign-in ends or its access token expires, and a subscription ends with
 * an error when its viewer loses access to the project it follows.
 */
export function attachGraphQLWebSocket(options: {
  httpServer: Server;
  gate: OperationGate;
  services: Services;
  limits: WebSocketLimits;
  logger: Logger;
}): GraphQLWebSocketServer {
  const { gate, services, limits, logger } = options;
  const wsServer = new WebSocketServer({ server: options.httpServer, path: '/graphql', maxPayload: limits.maxPayloadBytes });
  const sockets = new SignedInSockets();
  const ended = services.pubsub.subscribe(sessionsEnded);
  void (async () => {
    for await (const { userId, sessionId } of ended) sockets.closeSignIns(userId, sessionId, 'Forbidden: signed out');
  })();

  const cleanup = useServer<Record<string, unknown>, SocketState>({
    schema: gate.schema,
    subscribe: liveSubscribe<Context>({
      viewerOf: (context) => context.viewer?.userId ?? '',
      contextForEvent,
      watchAccess: (context) => context.viewer && context.authorizedProjects.size > 0
        ? services.projects.watchAccess(context.viewer.userId, context.authorizedProjects)
        : undefined,
    }),
    async onConnect(ctx) {
      const authorization = ctx.connectionParams?.authorization;
      if (authorization === undefined || authorization === null || authorization === '') return true;
      let viewer: Viewer;
      try {
        viewer = await services.auth.authenticate(String(authorization));
      } catch {
        return false; // graphql-ws closes with 4403 Forbidden
      }
      const socket = ctx.extra.socket;
      if (!sockets.add(socket, viewer, limits.maxSocketsPerUser)) {
        socket.close(CLOSE_TOO_MANY, `Too many sockets: at most ${limits.maxSocketsPerUser} per user`);
        return false;
      }
      ctx.extra.viewer = viewer;
      return true;
    },
    onSubscribe(ctx, id, payload) {
      const viewer = ctx.extra.viewer;
      if (viewer && TokenService.isExpired(viewer)) {
        ctx.extra.socket.close(CLOSE_FORBIDDEN, 'Forbidden: access token expired');
        return [new GraphQLError('Your access token has expired: get a new one with refreshToken.', {
          extensions: { code: ErrorCode.UNAUTHENTICATED },
        })];
      }
      if (Object.keys(ctx.subscriptions).length > limits.maxSubscriptionsPerSocket) {
        return [new GraphQLError(`A socket may run at most ${limits.maxSubscriptionsPerSocket} operations at once.`, {
          extensions: { code: ErrorCode.RATE_LIMITED },
        })];
      }
      const admission = gate.admit(payload, { subscriptions: true });
      if ('errors' in admission) return admission.errors;
      const requestId = randomUUID();
      const contextValue = createContext({
        requestId, logger: logger.child({ requestId, transport: 'ws' }), viewer, services,
        clientAddress: ctx.extra.request.socket.remoteAddress ?? 'unknown',
      });
      (ctx.extra.operations ??= new Map()).set(id, contextValue);
      const args: ExecutionArgs = {
        schema: gate.schema, document: admission.document, operationName: payload.operationName,
        variableValues: payload.variables, contextValue,
      };
      return args;
    },
    onNext(ctx, id, _payload, _args, result) {
      if (!result.errors) return;
      const context = ctx.extra.operations?.get(id);
      return { ...result, errors: result.errors.map((e) => reportAndMask(e, context, logger, gate.hidesSchema)) };
    },
    onError(ctx, id, _payload, errors) {
      const context = ctx.extra.operations?.get(id);
      return errors.map((e) => reportAndMask(e, context, logger, gate.hidesSchema));
    },
    onComplete(ctx, id) {
      ctx.extra.operations?.delete(id);
    },
    onClose(ctx) {
      sockets.remove(ctx.extra.socket);
    },
  }, wsServer);

  return {
    async close() {
      await ended.return?.();
      sockets.clear();
      await cleanup.dispose();
      await new Promise<void>((resolve) => wsServer.close(() => resolve()));
    },
  };
}

/** The signed-in sockets of this instance, by user and sign-in, each closed when its access token expires. */
class SignedInSockets {
  private readonly viewers = new Map<WebSocket, { viewer: Viewer; expiry: NodeJS.Timeout }>();
  private readonly perUser = new Map<string, number>();

  /** False when the user already has `max` sockets open here. */
  add(socket: WebSocket, viewer: Viewer, max: number): boolean {
    const open = this.perUser.get(viewer.userId) ?? 0;
    if (open >= max) return false;
    this.perUser.set(viewer.userId, open + 1);
    const closeWhenExpired = (): NodeJS.Timeout => setTimeout(() => {
      if (!TokenService.isExpired(viewer)) return void (this.viewers.get(socket)!.expiry = closeWhenExpired());
      socket.close(CLOSE_FORBIDDEN, 'Forbidden: access token expired');
    }, Math.min(Math.max(viewer.expiresAt * 1000 - Date.now(), 0), MAX_TIMER_MS));
    this.viewers.set(socket, { viewer, expiry: closeWhenExpired() });
    return true;
  }

  remove(socket: WebSocket): void {
    const entry = this.viewers.get(socket);
    if (!entry) return;
    clearTimeout(entry.expiry);
    this.viewers.delete(socket);
    const open = (this.perUser.get(entry.viewer.userId) ?? 1) - 1;
    if (open > 0) this.perUser.set(entry.viewer.userId, open);
    else this.perUser.delete(entry.viewer.userId);
  }

  /** Closes the sockets of one sign-in, or of every sign-in of the user when `sessionId` is undefined. */
  closeSignIns(userId: string, sessionId: string | undefined, reason: string): void {
    for (const [socket, { viewer }] of this.viewers) {
      if (viewer.userId === userId && (sessionId === undefined || viewer.sessionId === sessionId)) socket.close(CLOSE_FORBIDDEN, reason);
    }
  }

  clear(): void {
    for (const { expiry } of this.viewers.values()) clearTimeout(expiry);
  }
}

function reportAndMask(error: GraphQLError, context: Context | undefined, logger: Logger, hideSchema: boolean) {
  reportError(error, context?.logger ?? logger);
  return maskError(error.toJSON(), context?.requestId, error, hideSchema);
}
