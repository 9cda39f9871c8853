import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { expressMiddleware } from '@as-integrations/express5';
import cors from 'cors';
import express from 'express';
import { graphqlUploadExpress } from 'graphql-upload-ts';
import type { Config } from '../config.js';
import { connectDatabase, ensureIndexes, type Database } from '../db/database.js';
import { dashboardRouter } from '../dashboard/dashboard.router.js';
import { graphiqlRouter } from '../graphiql/graphiql.router.js';
import { appArchiveRouter } from '../modules/apps/app-archive.router.js';
import { browserSessionRouter } from '../modules/auth/browser-session.router.js';
import { metricsExportRouter } from '../modules/training/metrics-export.router.js';
import { checkpointRouter } from '../modules/training/checkpoint.router.js';
import { contextOf, type Context } from './context.js';
import { DATABASE_RETRY_AFTER_SECONDS, ErrorCode } from '../errors.js';
import { maskError, reportError } from '../graphql/errors.js';
import { MAX_TOKENS, OperationGate } from '../graphql/operation-gate.js';
import { buildPollenSchema } from './schema.js';
import { attachGraphQLWebSocket } from './websocket.js';
import {
  admitOperations, httpErrorHandler, limitMultipartLength, rejectInvalidUtf8, requestContext, requirePreflightForMultipart,
} from '../http/request-context.js';
import type { Logger } from '../logger.js';
import { InProcessPubSub, type PubSub } from '../pubsub/pubsub.js';
import { RedisPubSub } from '../pubsub/redis-pubsub.js';
import { createServices, MODELS } from './services.js';
import { startWorkers, type Workers } from './workers.js';

export interface RunningPollen {
  /** http://HOST:PORT/graphql, with the port actually bound. */
  readonly url: string;
  readonly port: number;
  readonly database: Database;
  /** Graceful: stop accepting, drain requests, close sockets, disconnect, stop FerretDB. */
  stop(): Promise<void>;
}

/** Connects the database, then serves GraphQL over HTTP and graphql-ws on one port. */
export async function startPollen(config: Config, logger: Logger): Promise<RunningPollen> {
  const database = await connectDatabase(config, logger);
  try {
    await ensureIndexes(MODELS);
    return await serve(config, logger, database);
  } catch (error) {
    await database.close();
    throw error;
  }
}

async function serve(config: Config, logger: Logger, database: Database): Promise<RunningPollen> {
  const pubsub: PubSub = config.redisUrl ? await RedisPubSub.connect(config.redisUrl) : new InProcessPubSub();
  const schema = await buildPollenSchema(pubsub);
  const services = createServices(config, pubsub, logger);
  await services.training.backfillLatestMetrics();
  const introspection = config.nodeEnv !== 'production';
  const gate = new OperationGate(schema, { maxDepth: config.queryMaxDepth, maxCost: config.queryMaxCost, introspection });

  const app = express();
  app.disable('x-powered-by');
  const httpServer = createServer(app);
  const webSocket = attachGraphQLWebSocket({
    httpServer, gate, services, logger,
    limits: {
      maxPayloadBytes: config.maxJsonBodyBytes,
      maxSubscriptionsPerSocket: config.maxSubscriptionsPerSocket,
      maxSocketsPerUser: config.maxSocketsPerUser,
    },
  });

  const apollo = new ApolloServer<Context>({
    schema,
    introspection,
    // main.ts owns signal handling and stops everything in order.
    stopOnTerminationSignals: false,
    includeStacktraceInErrorResponses: false,
    parseOptions: { maxTokens: MAX_TOKENS },
    // Every operation reaches Apollo through admitOperations, which validated it already (with
    // introspection refused in production); validating again would only cost time.
    dangerouslyDisableValidation: true,
    // Request ids are added per response by the plugin below, which knows the request.
    formatError: (formatted, error) => maskError(formatted, undefined, error, !introspection),
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer }),
      ApolloServerPluginLandingPageDisabled(),
      // Pollen sets no cache hints; the plugin's per-field hook would wrap every resolver.
      ApolloServerPluginCacheControlDisabled(),
      operationPlugin(),
    ],
  });
  await apollo.start();

  app.use(requestContext(logger));
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const readiness = await database.readiness();
    if (readiness.ready) res.json({ status: 'ready', database: 'up' });
    else res.status(503).json({ status: 'unavailable', database: 'down', reason: readiness.reason });
  });
  app.use(dashboardRouter());
  app.use(browserSessionRouter(services.auth, {
    refreshTokenTtlSeconds: config.refreshTokenTtlSeconds, secureCookie: config.nodeEnv === 'production',
  }));
  app.use(graphiqlRouter());
  app.use(appArchiveRouter((req) => contextOf(req, services)));
  app.use(metricsExportRouter((req) => contextOf(req, services)));
  app.use(checkpointRouter((req) => contextOf(req, services, { signedLinks: true })));
  app.use(
    '/graphql',
    cors({ origin: config.corsOrigins.length > 0 ? config.corsOrigins : false }),
    express.json({ limit: config.maxJsonBodyBytes, verify: rejectInvalidUtf8 }),
    requirePreflightForMultipart,
    limitMultipartLength(config.maxUploadBytes, config.maxJsonBodyBytes),
    graphqlUploadExpress({ maxFileSize: config.maxUploadBytes, maxFiles: 1 }),
    admitOperations(gate),
    expressMiddleware(apollo, { context: ({ req }) => contextOf(req, services) }),
  );
  app.use((_req, res) => {
    res.status(404).json({ errors: [{ message: 'Not found', extensions: { code: 'NOT_FOUND' } }] });
  });
  app.use(httpErrorHandler);

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.port, config.host, () => resolve());
  });
  const workers = await startWorkers(config, services, pubsub, logger);
  const port = (httpServer.address() as AddressInfo).port;
  const url = `http://${displayHost(config.host)}:${port}/graphql`;

  let stopping: Promise<void> | undefined;
  return {
    url,
    port,
    database,
    stop: () => (stopping ??= shutdown(httpServer, webSocket, apollo, workers, pubsub, database, logger)),
  };
}

async function shutdown(
  httpServer: Server,
  webSocket: { close(): Promise<void> },
  apollo: ApolloServer<Context>,
  workers: Workers,
  pubsub: PubSub,
  database: Database,
  logger: Logger,
): Promise<void> {
  logger.info('shutting down');
  await webSocket.close();
  await apollo.stop(); // the drain plugin stops accepting, finishes requests, closes the server
  if (httpServer.listening) await new Promise<void>((resolve) => httpServer.close(() => resolve()));
  await workers.stop();
  await pubsub.close();
  await database.close();
  logger.info('stopped');
}

/** Request ids on errors, and logging of unexpected errors with stacks. */
function operationPlugin(): ApolloServerPlugin<Context> {
  return {
    async requestDidStart() {
      return {
        async didEncounterErrors({ errors, contextValue }) {
          for (const error of errors) reportError(error, contextValue.logger);
        },
        async willSendResponse({ response, contextValue }) {
          if (response.body.kind === 'single' && response.body.singleResult.errors) {
            response.body.singleResult.errors = response.body.singleResult.errors.map((e) => ({
              ...e,
              extensions: { ...e.extensions, requestId: contextValue.requestId },
            }));
            // The whole service is unavailable, not the request wrong: 503, and when to try again.
            if (response.body.singleResult.errors.some((e) => e.extensions?.code === ErrorCode.DATABASE_UNAVAILABLE)) {
              response.http.status = 503;
              response.http.headers.set('retry-after', String(DATABASE_RETRY_AFTER_SECONDS));
            }
          }
        },
      };
    },
  };
}

function displayHost(host: string): string {
  return ['127.0.0.1', '0.0.0.0', '::', '::1'].includes(host) ? 'localhost' : host.includes(':') ? `[${host}]` : host;
}
