import { readFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../logger.js';

/** The routes of flwr/superlink/routers/fleet/router.py (flwr 1.42.0). */
const FLEET_ROUTES = new Set([
  'register-node', 'activate-node', 'deactivate-node', 'unregister-node', 'send-node-heartbeat',
  'pull-messages', 'push-messages', 'get-run', 'get-fab', 'push-object', 'pull-object', 'confirm-message-received',
]);
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);
const UPSTREAM_TIMEOUT_MS = 120_000;

export interface FleetGatewayOptions {
  listenHost: string;
  /** 0 picks a free port; a project's port is kept so its nodes' configuration stays valid. */
  listenPort: number;
  upstreamPort: number;
  certFile: string;
  keyFile: string;
  caFile: string;
  logger: Logger;
}

/**
 * The only door to a project's SuperLink from the network. Flower 1.42 serves its Control,
 * Fleet and Runtime APIs on one port, and without Flower Enterprise the Control API has no
 * authentication: whoever reaches it could start runs (code on this host) or register SuperNode
 * keys. So the SuperLink listens on 127.0.0.1 and this gateway, on FLEET_HOST, terminates TLS
 * with the SuperLink's own certificate and forwards only the Fleet API. SuperNode authentication
 * is unaffected: it travels in HTTP headers that pass through.
 */
export class FleetGateway {
  private constructor(private readonly server: https.Server, private readonly agent: https.Agent) {}

  static async open(options: FleetGatewayOptions): Promise<FleetGateway> {
    const [cert, key, ca] = await Promise.all([readFile(options.certFile), readFile(options.keyFile), readFile(options.caFile)]);
    const agent = new https.Agent({ keepAlive: true, ca, maxSockets: 256 });
    const server = https.createServer({ cert, key }, (req, res) => {
      if (!allowed(req.method, req.url)) {
        options.logger.warn({ remote: req.socket.remoteAddress, method: req.method, url: req.url?.slice(0, 200) },
          'fleet gateway refused a request outside the Fleet API');
        req.resume();
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      const headers: Record<string, string | string[] | undefined> = {};
      for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name)) headers[name] = value;
      headers.host = `127.0.0.1:${options.upstreamPort}`;
      const upstream = https.request({
        host: '127.0.0.1', port: options.upstreamPort, method: req.method, path: req.url, headers, agent,
        servername: 'localhost', timeout: UPSTREAM_TIMEOUT_MS,
      }, (answer) => {
        const out: Record<string, string | string[] | undefined> = {};
        for (const [name, value] of Object.entries(answer.headers)) if (!HOP_BY_HOP.has(name)) out[name] = value;
        res.writeHead(answer.statusCode ?? 502, out);
        answer.pipe(res);
      });
      upstream.on('timeout', () => upstream.destroy(new Error('the SuperLink did not answer in time')));
      upstream.on('error', (error) => {
        // 502 is retryable for the SuperNode: it keeps trying while the SuperLink restarts.
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(`bad gateway: ${error.message}\n`);
        else res.destroy();
      });
      req.pipe(upstream);
    });
    server.keepAliveTimeout = 5_000;
    server.on('tlsClientError', () => undefined); // a scanner or a node without the CA: nothing to do
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.listenPort, options.listenHost, () => resolve());
    });
    return new FleetGateway(server, agent);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.agent.destroy();
  }
}

function allowed(method: string | undefined, url: string | undefined): boolean {
  if (method === 'GET' && url === '/health') return true;
  const route = /^\/v1\/fleet\/([a-z-]+)$/.exec(url ?? '');
  return method === 'POST' && route !== null && FLEET_ROUTES.has(route[1]!);
}
