import {
  createSourceEventStream, execute, type DocumentNode, type ExecutionArgs, type ExecutionResult, type GraphQLError,
} from 'graphql';

type Execution = ExecutionResult | Promise<ExecutionResult>;

/** Settles once a subscriber may no longer see what it subscribed to (undefined if stopped first). */
export interface AccessWatch {
  lost: Promise<GraphQLError | undefined>;
  stop(): void;
}

export interface LiveSubscribeOptions<C> {
  /** Subscribers of one viewer that sent the same document and variables share each event's execution. */
  viewerOf(context: C): string;
  /** The context an event is executed with (fresh loaders: each event reads what is true now). */
  contextForEvent(context: C): C;
  /** Watches the subscriber's access, once the subscription was authorized; undefined when there is nothing to watch. */
  watchAccess(context: C): AccessWatch | undefined;
}

/**
 * graphql-js `subscribe`, with two differences. The subscribers of one event share its execution
 * when they sent the same document and variables as the same viewer: thousands may follow one job,
 * and each event is then executed once per viewer rather than once per subscriber, and only
 * serialized and sent per subscriber. And access is live: when the subscriber loses access to
 * what it follows (removed from the project, the project deleted), the stream ends with that
 * error at once, however quiet the stream was.
 */
export function liveSubscribe<C>(options: LiveSubscribeOptions<C>) {
  // Event -> execution key -> result; an event's results go when the event is collected.
  const executions = new WeakMap<object, Map<string, Execution>>();
  const documentIds = new WeakMap<DocumentNode, number>();
  let lastDocumentId = 0;

  return async (args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> => {
    const stream = await createSourceEventStream(args);
    if (!(Symbol.asyncIterator in stream)) return stream;
    const context = args.contextValue as C;
    let documentId = documentIds.get(args.document);
    if (documentId === undefined) documentIds.set(args.document, (documentId = ++lastDocumentId));
    const key = JSON.stringify([documentId, args.operationName ?? null, options.viewerOf(context), args.variableValues ?? null]);
    const run = (event: unknown) => execute({ ...args, contextValue: options.contextForEvent(context), rootValue: event });

    return mapEvents(stream, (event) => {
      if (typeof event !== 'object' || event === null) return run(event);
      let byKey = executions.get(event);
      if (!byKey) executions.set(event, (byKey = new Map()));
      let result = byKey.get(key);
      if (!result) byKey.set(key, (result = run(event)));
      return result;
    }, options.watchAccess(context));
  };
}

/**
 * Like graphql-js's mapAsyncIterator: `return()` reaches the source at once, even while it waits.
 * A lost access rejects the pending `next()` with its error and ends the source.
 */
function mapEvents<T>(
  source: AsyncIterable<unknown>,
  map: (event: unknown) => T | Promise<T>,
  watch: AccessWatch | undefined,
): AsyncIterableIterator<T> {
  const iterator = source[Symbol.asyncIterator]();
  const done: IteratorResult<T> = { value: undefined, done: true };
  let ended = false;
  const end = async () => {
    ended = true;
    watch?.stop();
    await iterator.return?.().catch(() => undefined); // keep the original error, if any
  };
  const revoked = watch?.lost.then((error) => {
    if (error) throw error;
    return new Promise<never>(() => undefined); // stopped: never wins a race
  });
  revoked?.catch(() => undefined); // raced below; unobserved when nobody waits

  const mapped = async (result: IteratorResult<unknown>): Promise<IteratorResult<T>> => {
    if (result.done) {
      watch?.stop();
      return done;
    }
    try {
      return { value: await map(result.value), done: false };
    } catch (error) {
      await end();
      throw error;
    }
  };
  return {
    next: async () => {
      if (ended) return done;
      let result: IteratorResult<unknown>;
      try {
        result = await (revoked ? Promise.race([iterator.next(), revoked]) : iterator.next());
      } catch (error) {
        await end();
        throw error;
      }
      return mapped(result);
    },
    return: async () => {
      await end();
      return done;
    },
    throw: async (error: unknown) => {
      await end();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
