import { EventEmitter } from 'node:events';

/**
 * Events between services and subscribers. Services publish after they write; subscriptions
 * iterate. This in-process implementation is the embedded default; one backed by Redis can take
 * its place for several API instances without changing publishers or subscribers.
 */
export interface PubSub {
  publish<T>(topic: Topic<T>, payload: T): void;
  /**
   * Events published once `ready` has resolved, in order, until `return()` is called on the
   * iterator. Await `ready` before reading state that later events change, so none is missed.
   * With `accept`, only the events it accepts are queued: the others do not wake the subscriber,
   * which matters when thousands follow a topic that carries events most of them ignore.
   */
  subscribe<T>(topic: Topic<T>, accept?: (payload: T) => boolean): Subscription<T>;
  close(): Promise<void>;
}

export type Subscription<T> = AsyncIterableIterator<T> & { ready: Promise<void> };

/** A topic name that carries its payload type. */
export type Topic<T> = string & { readonly __payload?: T };

export function topic<T>(name: string): Topic<T> {
  return name as Topic<T>;
}

export class InProcessPubSub implements PubSub {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  publish<T>(name: Topic<T>, payload: T): void {
    this.emitter.emit(name, payload);
  }

  subscribe<T>(name: Topic<T>, accept?: (payload: T) => boolean): Subscription<T> {
    const queue = new EventQueue<T>(() => this.emitter.off(name, listener));
    const listener = (payload: T) => {
      if (!accept || accept(payload)) queue.push(payload);
    };
    this.emitter.on(name, listener);
    return Object.assign(queue, { ready: Promise.resolve() });
  }

  async close(): Promise<void> {
    this.emitter.removeAllListeners();
  }
}

/** An async iterator fed by push(); events wait in order until the consumer pulls them. */
export class EventQueue<T> implements AsyncIterableIterator<T> {
  private readonly buffered: T[] = [];
  private readonly waiting: Array<(result: IteratorResult<T>) => void> = [];
  private done = false;

  constructor(private readonly onClose: () => void = () => undefined) {}

  push(value: T): void {
    if (this.done) return;
    const resolve = this.waiting.shift();
    if (resolve) resolve({ value, done: false });
    else this.buffered.push(value);
  }

  /** Ends the iteration once the buffered events are consumed. */
  close(): void {
    if (this.done) return;
    this.done = true;
    this.onClose();
    for (const resolve of this.waiting.splice(0)) resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<T>> {
    if (this.buffered.length > 0) return Promise.resolve({ value: this.buffered.shift()!, done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.buffered.length = 0;
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}

/**
 * `stream`, a generator that reads `events`, as an iterator whose return() closes `events` first.
 * An async generator's own return() waits until the await it is suspended at settles, which on a
 * quiet topic may be never; closing the subscription ends that wait, and with it the generator.
 * `events` is closed when the stream ends by itself too.
 */
export function closable<T>(events: Subscription<unknown>, stream: AsyncGenerator<T>): AsyncIterableIterator<T> {
  const close = async () => {
    await events.return?.();
  };
  return {
    async next() {
      try {
        const result = await stream.next();
        if (result.done) await close();
        return result;
      } catch (error) {
        await close();
        throw error;
      }
    },
    async return() {
      await close();
      await stream.return(undefined);
      return { value: undefined, done: true };
    },
    async throw(error: unknown) {
      await close();
      return stream.throw(error);
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
