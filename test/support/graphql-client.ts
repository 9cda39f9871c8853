import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type GraphQLFormattedError } from 'graphql';
import { running } from './processes.js';

export interface GraphQLResponse<R> {
  status: number;
  headers: Headers;
  data?: R | null;
  errors?: GraphQLFormattedError[];
}

/** Runs typed documents from test/operations over HTTP, as any client would. */
export class GraphQLClient {
  constructor(readonly url: string, public token?: string) {}

  async request<R, V>(
    document: TypedDocumentNode<R, V>,
    ...[variables, headers]: V extends Record<string, never> ? [V?, Record<string, string>?] : [V, Record<string, string>?]
  ): Promise<GraphQLResponse<R>> {
    return this.post({ query: print(document), variables }, headers);
  }

  /** Posts a raw GraphQL body (for hostile or hand-written requests). */
  async post<R = Record<string, unknown>>(body: unknown, headers: Record<string, string> = {}): Promise<GraphQLResponse<R>> {
    const response = await fetch(this.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        ...headers,
      },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: { data?: R | null; errors?: GraphQLFormattedError[] };
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`Non-JSON answer (${response.status}): ${text.slice(0, 200)}`);
    }
    return { status: response.status, headers: response.headers, ...parsed };
  }

  /**
   * Sends a GraphQL multipart request (the upload spec), with the preflight header Apollo's CSRF
   * prevention asks for. `files` maps a variable name to the file sent for it.
   */
  async upload<R, V>(
    document: TypedDocumentNode<R, V>,
    variables: V,
    files: Record<string, { bytes: Buffer; filename: string }>,
  ): Promise<GraphQLResponse<R>> {
    return this.send(this.prepareUpload(document, variables, files));
  }

  /**
   * The request upload() sends, encoded now to be sent later, from this process or another. The
   * body is put together in one copy: encoding 100 MB through FormData took seconds on a busy host,
   * long enough for the server to close this process's idle keep-alive connections while fetch,
   * which could not run its timers meanwhile, still took them for open (EPIPE).
   */
  prepareUpload<R, V>(
    document: TypedDocumentNode<R, V>,
    variables: V,
    files: Record<string, { bytes: Buffer; filename: string }>,
  ): PreparedRequest<R> {
    const names = Object.keys(files);
    const boundary = `pollen-test-${randomUUID()}`;
    const part = (name: string, content: string | Buffer, filename?: string) => [
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"` +
        `${filename === undefined ? '' : `; filename="${encodeURIComponent(filename)}"\r\nContent-Type: application/octet-stream`}\r\n\r\n`),
      typeof content === 'string' ? Buffer.from(content) : content,
      Buffer.from('\r\n'),
    ];
    const body = Buffer.concat([
      ...part('operations', JSON.stringify({
        query: print(document),
        variables: { ...variables, ...Object.fromEntries(names.map((name) => [name, null])) },
      })),
      ...part('map', JSON.stringify(Object.fromEntries(names.map((name, i) => [String(i), [`variables.${name}`]])))),
      ...names.flatMap((name, i) => part(String(i), files[name]!.bytes, files[name]!.filename)),
      Buffer.from(`--${boundary}--\r\n`),
    ]);
    return {
      url: this.url,
      headers: {
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'apollo-require-preflight': 'true',
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
      body: new Uint8Array(body.buffer, body.byteOffset, body.byteLength) as Uint8Array<ArrayBuffer>,
    };
  }

  async send<R>(request: PreparedRequest<R>): Promise<GraphQLResponse<R>> {
    const response = await fetch(request.url, { method: 'POST', headers: request.headers, body: request.body });
    return { status: response.status, headers: response.headers, ...(await response.json()) };
  }

  /** Like request, but fails the test on any error and returns the data. */
  async data<R, V>(
    document: TypedDocumentNode<R, V>,
    ...rest: V extends Record<string, never> ? [V?, Record<string, string>?] : [V, Record<string, string>?]
  ): Promise<R> {
    const result = await this.request(document, ...rest);
    if (result.errors?.length || !result.data) {
      throw new Error(`GraphQL errors: ${JSON.stringify(result.errors)}`);
    }
    return result.data;
  }
}

/** An HTTP POST ready to send; `R` is the GraphQL result it answers with. */
export interface PreparedRequest<R> {
  url: string;
  headers: Record<string, string>;
  body: Uint8Array<ArrayBuffer>;
  /** Only carries the result type. */
  readonly result?: R;
}

/** What sendFromAnotherProcess saw of one response. */
export interface SentRequest<R> {
  status: number;
  /** From sending the request to reading the whole answer. */
  ms: number;
  data?: R | null;
  errors?: GraphQLFormattedError[];
}

const SENDER = `
import { readFileSync } from 'node:fs';
const requests = JSON.parse(readFileSync(process.argv[1], 'utf8'));
const bodies = new Map(requests.map(({ bodyFile }) => [bodyFile, readFileSync(bodyFile)]));
const answers = await Promise.all(requests.map(async ({ url, headers, bodyFile }) => {
  const started = performance.now();
  const response = await fetch(url, { method: 'POST', headers, body: bodies.get(bodyFile) });
  const text = await response.text();
  return { status: response.status, ms: performance.now() - started, ...JSON.parse(text) };
}));
process.stdout.write(JSON.stringify(answers));
`;

/**
 * Sends requests all at once from a separate Node process, as other clients would: this process
 * stays free to measure what its own requests meet meanwhile. Answers come back in order.
 */
export async function sendFromAnotherProcess<R>(requests: ReadonlyArray<PreparedRequest<R>>): Promise<Array<SentRequest<R>>> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pollen-test-sender-'));
  try {
    const bodyFiles = new Map<Uint8Array, string>();
    const manifest = requests.map(({ url, headers, body }) => {
      if (!bodyFiles.has(body)) {
        bodyFiles.set(body, path.join(dir, `${bodyFiles.size}.body`));
        writeFileSync(bodyFiles.get(body)!, body);
      }
      return { url, headers, bodyFile: bodyFiles.get(body) };
    });
    writeFileSync(path.join(dir, 'requests.json'), JSON.stringify(manifest));
    const child = spawn(process.execPath, ['--input-type=module', '-e', SENDER, path.join(dir, 'requests.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    const output: Buffer[] = [];
    const errors: Buffer[] = [];
    child.stdout!.on('data', (chunk: Buffer) => output.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => errors.push(chunk));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    running.delete(child);
    if (code !== 0) throw new Error(`The sender process failed (exit ${code}): ${Buffer.concat(errors).toString()}`);
    return JSON.parse(Buffer.concat(output).toString()) as Array<SentRequest<R>>;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The single error's code, or a readable failure. */
export function errorCode(result: { errors?: readonly GraphQLFormattedError[] }): unknown {
  if (result.errors?.length !== 1) throw new Error(`expected exactly one error, got ${JSON.stringify(result.errors)}`);
  return result.errors[0]!.extensions?.code;
}
