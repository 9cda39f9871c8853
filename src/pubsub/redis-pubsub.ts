import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import { Redis } from 'ioredis';
import mongoose from 'mongoose';
import { EventQueue, type PubSub, type Subscription, type Topic } from './pubsub.js';

// Extended JSON keeps what plain JSON would flatten: ObjectIds stay ObjectIds, Dates stay Dates.
const { EJSON } = mongoose.mongo.BSON;
const serializer = {
  stringify: (message: unknown) => EJSON.stringify(message as object, { relaxed: true }),
  parse: (message: string) => EJSON.parse(message, { relaxed: true }),
};

/**
 * Events through Redis (REDIS_URL), so that a subscriber connected to one Pollen instance hears
 * what another instance publishes. Publishers and subscribers do not change.
 */
export class RedisPubSub implements PubSub {
  private constructor(
    private readonly target: EventTarget,
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
  ) {}

  static async connect(url: string): Promise<RedisPubSub> {
    const publisher = new Redis(url, { lazyConnect: true });
    const subscriber = new Redis(url, { lazyConnect: true });
    await Promise.all([publisher.connect(), subscriber.connect()]);
    const target = createRedisEventTarget({ publishClient: publisher, subscribeClient: subscriber, serializer });
    return new RedisPubSub(target as unknown as EventTarget, publisher, subscriber);
  }

  publish<T>(topic: Topic<T>, payload: T): void {
    this.target.dispatchEvent(new CustomEvent(topic, { detail: payload }));
  }

  subscribe<T>(topic: Topic<T>, accept?: (payload: T) => boolean): Subscription<T> {
    const queue = new EventQueue<T>(() => this.target.removeEventListener(topic, listener));
    const listener = (event: Event) => {
      const payload = (event as CustomEvent<T>).detail;
      if (!accept || accept(payload)) queue.push(payload);
    };
    this.target.addEventListener(topic, listener);
    // Redis answers a connection's commands in order: once this PING is answered, the SUBSCRIBE
    // sent before it is in effect.
    return Object.assign(queue, { ready: this.subscriber.ping().then(() => undefined) });
  }

  async close(): Promise<void> {
    await Promise.all([this.publisher.quit(), this.subscriber.quit()]);
  }
}
