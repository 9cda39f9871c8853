// Plain JavaScript (types from JSDoc), so that the tests and the benchmarks in bench/ share it.
import { createConnection, createServer } from 'node:net';

const OP_MSG = 2013;
/** Connection upkeep that drivers send on their own schedule, not per request. */
const UPKEEP = new Set(['hello', 'ismaster', 'isMaster', 'ping', 'endSessions', 'buildInfo', 'saslStart', 'saslContinue']);

/**
 * A loopback TCP proxy in front of a MongoDB-wire server that notes the name of every command
 * a client sends (the first key of each OP_MSG body), so that a test or a benchmark can count
 * what one GraphQL request costs the database.
 */
export class MongoCommandCounter {
  /** @type {string[]} */
  #seen = [];
  /** @type {Set<import('node:net').Socket>} */
  #sockets = new Set();
  /** @type {import('node:net').Server} */
  #server;

  /** @param {import('node:net').Server} server */
  constructor(server) {
    this.#server = server;
  }

  /**
   * @param {string} targetUri mongodb://HOST:PORT/ of the server to count for
   * @returns {Promise<MongoCommandCounter>}
   */
  static async start(targetUri) {
    const target = new URL(targetUri.replace(/^mongodb:/, 'http:'));
    /** @type {MongoCommandCounter} */
    let counter;
    const server = createServer((client) => {
      const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
      counter.#track(client, upstream);
      let pending = Buffer.alloc(0);
      client.on('data', (chunk) => {
        pending = counter.#noteCommands(pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk);
        upstream.write(chunk);
      });
      upstream.on('data', (chunk) => client.write(chunk));
    });
    counter = new MongoCommandCounter(server);
    await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
    return counter;
  }

  /** mongodb://127.0.0.1:PORT/ */
  get uri() {
    const address = /** @type {import('node:net').AddressInfo} */ (this.#server.address());
    return `mongodb://127.0.0.1:${address.port}/`;
  }

  /**
   * Commands seen since the last call, by name, upkeep left out.
   * @returns {string[]}
   */
  take() {
    return this.#seen.splice(0).filter((name) => !UPKEEP.has(name));
  }

  /** @returns {Promise<void>} */
  async stop() {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise((resolve) => this.#server.close(() => resolve(undefined)));
  }

  /**
   * @param {import('node:net').Socket} client
   * @param {import('node:net').Socket} upstream
   */
  #track(client, upstream) {
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on('close', () => {
        this.#sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
      socket.on('error', () => undefined);
    }
  }

  /**
   * Reads whole messages off the front of `buffer`; returns the incomplete rest.
   * @param {Buffer} buffer
   * @returns {Buffer}
   */
  #noteCommands(buffer) {
    let offset = 0;
    while (buffer.length - offset >= 16) {
      const length = buffer.readInt32LE(offset);
      if (buffer.length - offset < length) break;
      // OP_MSG: header (16) · flagBits (4) · section kind 0 (1) · BSON: size (4) · first element type (1) · name
      if (buffer.readInt32LE(offset + 12) === OP_MSG && buffer[offset + 20] === 0) {
        const nameStart = offset + 26;
        this.#seen.push(buffer.toString('utf8', nameStart, buffer.indexOf(0, nameStart)));
      }
      offset += length;
    }
    return buffer.subarray(offset);
  }
}
