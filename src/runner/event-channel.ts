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
  | { type: 'checkpoint'; round: number; file: string; at: number }
  | { type: 'start'; run_id: string; at: number }
  | { type: 'end'; status: 'completed' | 'failed' | 'stopped'; error: string | null; at: number };

const MAX_LINE_BYTES = 1024 * 1024;
/** How long an answer waits for the events sent before its question to arrive. */
const ASK_WAIT_MS = 5_000;

/** A question of the shim's (continue with the next round?), asked on a connection of its own. */
export interface ShimQuestion { type: 'ask'; question: string; round: number; after: number }

/**
 * A per-job loopback endpoint for the shim. It is faster than `flwr log` (which polls about
 * every 0.5 s) and carries metrics as data. Only a connection that first sends the job's random
 * token is listened to.
 */
export class EventChannel {
  readonly token = randomBytes(24).toString('hex');
  private readonly sockets = new Set<Socket>();
  /** Events handed on so far, and who waits for a number of them. */
  private received = 0;
  private readonly waiting: Array<{ count: number; resolve: () => void }> = [];

  private constructor(private readonly server: Server, private readonly onAsk: (question: ShimQuestion) => object) {}

  /** `onAsk` answers the shim's questions; it sees every event the shim sent before asking. */
  static async open(onEvent: (event: ShimEvent) => void, onAsk: (question: ShimQuestion) => object = () => ({})): Promise<EventChannel> {
    let channel!: EventChannel;
    const server = createServer((socket) => channel.accept(socket, onEvent));
    channel = new EventChannel(server, onAsk);
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
      const message = parseLine(line);
      if (!authenticated) {
        authenticated = this.isToken((message as { token?: unknown } | undefined)?.token);
        if (!authenticated) socket.destroy();
        return;
      }
      if (isQuestion(message)) {
        void this.answer(socket, message);
        return;
      }
      if (isShimEvent(message)) onEvent(message);
      // Every line counts, understood or not: the shim numbers what it wrote.
      this.received += 1;
      for (const waiter of this.waiting.filter((one) => one.count <= this.received)) {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        waiter.resolve();
      }
    });
  }

  private async answer(socket: Socket, question: ShimQuestion): Promise<void> {
    if (question.after > this.received) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ASK_WAIT_MS);
        this.waiting.push({ count: question.after, resolve: () => (clearTimeout(timer), resolve()) });
      });
    }
    socket.write(`${JSON.stringify(this.onAsk(question))}\n`);
  }

  private isToken(value: unknown): boolean {
    if (typeof value !== 'string') return false;
    const given = Buffer.from(value);
    const expected = Buffer.from(this.token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

function parseLine(line: string): unknown {
  if (line.length > MAX_LINE_BYTES) return undefined;
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

function isQuestion(value: unknown): value is ShimQuestion {
  const question = value as Partial<ShimQuestion> | null;
  return Boolean(question && question.type === 'ask' && typeof question.question === 'string' &&
    Number.isInteger(question.round) && Number.isInteger(question.after));
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
    case 'checkpoint':
      return Number.isInteger(event.round) && typeof event.file === 'string';
    case 'start':
      return typeof event.run_id === 'string';
    case 'end':
      return ['completed', 'failed', 'stopped'].includes(event.status as string);
    default:
      return false;
  }
}
