import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

/** What the ServerApp shim (python/pollen_shim.py) sends, one JSON object per line. */
export type ShimEvent =
  | { type: 'metric'; round: number; phase: 'TRAIN' | 'EVALUATE' | 'SERVER_EVALUATE'; values: Record<string, unknown>; at: number }
  | { type: 'round'; round: number; total?: number; at: number }
  | {
    type: 'replies'; round: number; phase: 'TRAIN' | 'EVALUATE'; sent: number; ok: number; failed: number;
    errors: Array<{ node_id: string; reason: string }>; at: number;
  }
  | { type: 'log'; line: string; at: number }
  | { type: 'start'; run_id: string; at: number }
  | { type: 'end'; status: 'completed' | 'failed' | 'stopped'; error: string | null; at: number };

const MAX_LINE_BYTES = 1024 * 1024;

/**
 * A per-job loopback endpoint for the shim. It is faster than `flwr log` (which polls about
 * every 0.5 s) and carries metrics as data. Only a connection that first sends the job's random
 * token is listened to.
 */
export class EventChannel {
  readonly token = randomBytes(24).toString('hex');
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static async open(onEvent: (event: ShimEvent) => void): Promise<EventChannel> {
    let channel!: EventChannel;
    const server = createServer((socket) => channel.accept(socket, onEvent));
    channel = new EventChannel(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return channel;
  }

  get address(): string {
    const { port } = this.server.address() as AddressInfo;
    return `127.0.0.1:${port}`;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket, onEvent: (event: ShimEvent) => void): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let authenticated = false;
    let received = 0;
    socket.on('data', (chunk) => {
      received += chunk.length;
      if (!authenticated && received > MAX_LINE_BYTES) socket.destroy();
    });
    const lines = createInterface({ input: socket, crlfDelay: Infinity });
    lines.on('line', (line) => {
      if (line.length > MAX_LINE_BYTES) return;
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        return;
      }
      if (!authenticated) {
        authenticated = this.isToken((message as { token?: unknown })?.token);
        if (!authenticated) socket.destroy();
        return;
      }
      if (isShimEvent(message)) onEvent(message);
    });
  }

  private isToken(value: unknown): boolean {
    if (typeof value !== 'string') return false;
    const given = Buffer.from(value);
    const expected = Buffer.from(this.token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

function isShimEvent(value: unknown): value is ShimEvent {
  const event = value as Partial<ShimEvent> | null;
  if (!event || typeof event !== 'object' || typeof event.at !== 'number') return false;
  switch (event.type) {
    case 'metric':
      return Number.isInteger(event.round) && ['TRAIN', 'EVALUATE', 'SERVER_EVALUATE'].includes(event.phase as string) &&
        typeof event.values === 'object' && event.values !== null;
    case 'round':
      return Number.isInteger(event.round);
    case 'replies':
      return Number.isInteger(event.round) && Number.isInteger(event.sent) && Number.isInteger(event.failed) && Array.isArray(event.errors);
    case 'log':
      return typeof event.line === 'string';
    case 'start':
      return typeof event.run_id === 'string';
    case 'end':
      return ['completed', 'failed', 'stopped'].includes(event.status as string);
    default:
      return false;
  }
}
