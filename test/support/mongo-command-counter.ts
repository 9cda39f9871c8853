import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

const OP_MSG = 2013;
/** Connection upkeep that drivers send on their own schedule, not per request. */
const UPKEEP = new Set(['hello', 'ismaster', 'isMaster', 'ping', 'endSessions', 'buildInfo', 'saslStart', 'saslContinue']);

/**
 * A loopback TCP proxy in front of a MongoDB-wire server that notes the name of every command
 * a client sends, so a test can count what one GraphQL request costs the database.
 */
export class MongoCommandCounter {
  private readonly seen: string[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static async start(targetUri: string): Promise<MongoCommandCounter> {
    const target = new URL(targetUri.replace(/^mongodb:/, 'http:'));
    let counter!: MongoCommandCounter;
    const server = createServer((client) => {
      const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
      counter.track(client, upstream);
      let pending: Buffer = Buffer.alloc(0);
      client.on('data', (chunk) => {
        pending = counter.noteCommands(Buffer.concat([pending, chunk]));
        upstream.write(chunk);
      });
      upstream.on('data', (chunk) => client.write(chunk));
    });
    counter = new MongoCommandCounter(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return counter;
  }

  /** mongodb://127.0.0.1:PORT/ */
  get uri(): string {
    return `mongodb://127.0.0.1:${(this.server.address() as AddressInfo).port}/`;
  }

  /** Commands seen since the last call, upkeep left out. */
  take(): string[] {
    return this.seen.splice(0).filter((name) => !UPKEEP.has(name));
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private track(client: Socket, upstream: Socket): void {
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('close', () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
      socket.on('error', () => undefined);
    }
  }

  /** Reads whole messages off the front of `buffer`; returns the incomplete rest. */
  private noteCommands(buffer: Buffer): Buffer {
    let offset = 0;
    while (buffer.length - offset >= 16) {
      const length = buffer.readInt32LE(offset);
      if (buffer.length - offset < length) break;
      // OP_MSG: header (16) · flagBits (4) · section kind 0 (1) · BSON: size (4) · first element type (1) · name
      if (buffer.readInt32LE(offset + 12) === OP_MSG && buffer[offset + 20] === 0) {
        const nameStart = offset + 26;
        this.seen.push(buffer.toString('utf8', nameStart, buffer.indexOf(0, nameStart)));
      }
      offset += length;
    }
    return buffer.subarray(offset);
  }
}
