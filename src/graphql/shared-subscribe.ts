import {
  createSourceEventStream, execute, type DocumentNode, type ExecutionArgs, type ExecutionResult,
} from 'graphql';

type Execution = ExecutionResult | Promise<ExecutionResult>;

/**
 * graphql-js `subscribe`, except that the subscribers of one event share its execution when they
 * sent the same document and variables as the same viewer: what a subscriber may see was settled
 * when it subscribed, and the result depends on nothing else. Thousands may follow one job; each
 * event is then executed once per viewer rather than once per subscriber, and only serialized and
 * sent per subscriber.
 */
export function sharedSubscribe(viewerOf: (contextValue: unknown) => string) {
  // Event -> execution key -> result; an event's results go when the event is collected.
  const executions = new WeakMap<object, Map<string, Execution>>();
  const documentIds = new WeakMap<DocumentNode, number>();
  let lastDocumentId = 0;

  return async (args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> => {
    const stream = await createSourceEventStream(args);
    if (!(Symbol.asyncIterator in stream)) return stream;
    let documentId = documentIds.get(args.document);
    if (documentId === undefined) documentIds.set(args.document, (documentId = ++lastDocumentId));
    const key = JSON.stringify([documentId, args.operationName ?? null, viewerOf(args.contextValue), args.variableValues ?? null]);

    return mapEvents(stream, (event) => {
      if (typeof event !== 'object' || event === null) return execute({ ...args, rootValue: event });
      let byKey = executions.get(event);
      if (!byKey) executions.set(event, (byKey = new Map()));
      let result = byKey.get(key);
      if (!result) byKey.set(key, (result = execute({ ...args, rootValue: event })));
      return result;
    });
  };
}

/** Like graphql-js's mapAsyncIterator: `return()` reaches the source at once, even while it waits. */
function mapEvents<T>(source: AsyncIterable<unknown>, map: (event: unknown) => T | Promise<T>): AsyncIterableIterator<T> {
  const iterator = source[Symbol.asyncIterator]();
  const mapped = async (result: IteratorResult<unknown>): Promise<IteratorResult<T>> => {
    if (result.done) return { value: undefined, done: true };
    try {
      return { value: await map(result.value), done: false };
    } catch (error) {
      await iterator.return?.().catch(() => undefined); // keep the original error
      throw error;
    }
  };
  return {
    next: async () => mapped(await iterator.next()),
    return: async () => (iterator.return ? mapped(await iterator.return()) : { value: undefined, done: true }),
    throw: async (error: unknown) => {
      if (iterator.throw) return mapped(await iterator.throw(error));
      await iterator.return?.();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
