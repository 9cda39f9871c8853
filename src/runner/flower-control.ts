import http from 'node:http';
import https from 'node:https';
import protobuf from 'protobufjs';

/**
 * The few messages of Flower's Control API (flwr/proto/control.proto and run.proto, flwr 1.42)
 * that Pollen uses, by field number. Other fields are skipped when decoding.
 */
const messages = protobuf.Root.fromJSON(<protobuf.INamespace>{
  nested: {
    flwr: {
      nested: {
        proto: {
          nested: {
            ListRunsRequest: { fields: { runId: { type: 'uint64', id: 1 } } },
            ListRunsResponse: { fields: { runDict: { keyType: 'uint64', type: 'Run', id: 1 } } },
            Run: { fields: { runId: { type: 'uint64', id: 1 }, status: { type: 'RunStatus', id: 10 } } },
            RunStatus: { fields: { status: { type: 'string', id: 1 }, subStatus: { type: 'string', id: 2 }, details: { type: 'string', id: 3 } } },
            StopRunRequest: { fields: { runId: { type: 'uint64', id: 1 } } },
            StopRunResponse: { fields: { success: { type: 'bool', id: 1 } } },
          },
        },
      },
    },
  },
});

const PROTOBUF = 'application/protobuf';
const TIMEOUT_MS = 10_000;

/** A run's status as Flower states it: `pending`, `starting`, `running` or `finished:<completed|failed|stopped>`. */
export interface RunState { status: string; details: string }

/**
 * Flower's Control API over HTTP (protobuf bodies), as the `flwr` CLI speaks it, without starting
 * a Python process per question: `flwr list` cost about 1.4 s of CPU a call on this machine, and a
 * run's status was asked every few seconds.
 */
export class FlowerControl {
  /** `url` is the SuperLink's Control API base (http://127.0.0.1:PORT, or https with the project's CA). */
  constructor(private readonly url: string, private readonly ca?: Buffer) {}

  /** The run's status, or undefined when the SuperLink does not know it. */
  async runState(runId: string): Promise<RunState | undefined> {
    const answer = await this.call('/v1/control/list-runs', 'ListRunsRequest', { runId }, 'ListRunsResponse') as {
      runDict?: Record<string, { status?: { status?: string; subStatus?: string; details?: string } }>;
    };
    const run = answer.runDict?.[runId];
    if (!run?.status?.status) return undefined;
    const { status, subStatus, details } = run.status;
    return { status: subStatus ? `${status}:${subStatus}` : status, details: details ?? '' };
  }

  /** Asks Flower to stop the run (its ServerApp and ClientApps); true when Flower accepted. */
  async stopRun(runId: string): Promise<boolean> {
    const answer = await this.call('/v1/control/stop-run', 'StopRunRequest', { runId }, 'StopRunResponse') as { success?: boolean };
    return answer.success === true;
  }

  private async call(path: string, requestType: string, request: object, responseType: string): Promise<object> {
    const Request = messages.lookupType(`flwr.proto.${requestType}`);
    const Response = messages.lookupType(`flwr.proto.${responseType}`);
    const body = Buffer.from(Request.encode(Request.fromObject(request)).finish());
    const target = new URL(path, this.url);
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      const client = target.protocol === 'https:' ? https : http;
      const sent = client.request(target, {
        method: 'POST', timeout: TIMEOUT_MS, ...(this.ca ? { ca: this.ca, servername: 'localhost' } : {}),
        headers: { 'content-type': PROTOBUF, accept: PROTOBUF, 'content-length': body.length },
      }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => (response.statusCode === 200
          ? resolve(Buffer.concat(chunks))
          : reject(new Error(`Flower's Control API answered ${path} with ${response.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 200)}`))));
        response.on('error', reject);
      });
      sent.on('timeout', () => sent.destroy(new Error(`Flower's Control API did not answer ${path} within ${TIMEOUT_MS / 1000} s`)));
      sent.on('error', reject);
      sent.end(body);
    });
    return Response.toObject(Response.decode(bytes), { longs: String });
  }
}
