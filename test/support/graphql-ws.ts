import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type GraphQLFormattedError } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

/** Everything a subscription delivered, and how it ended. */
export interface Collected<R> {
  items: R[];
  /** Resolves when the server completes the subscription; rejects on an error. */
  ended: Promise<void>;
  errors?: readonly GraphQLFormattedError[];
}

export interface WsConnection {
  client: Client;
  subscribe<R, V>(document: TypedDocumentNode<R, V>, variables?: V): Collected<R>;
  /** Resolves with the close event once the socket closes. */
  closed: Promise<{ code: number; reason: string }>;
  execute<R, V>(document: TypedDocumentNode<R, V>, variables?: V): Promise<{ data?: R | null; errors?: readonly GraphQLFormattedError[] }>;
}

/** A graphql-ws client, with connectionParams as the API contract describes. */
export function connectWebSocket(wsUrl: string, token?: string): WsConnection {
  let onClosed!: (event: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => (onClosed = resolve));
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    on: { closed: (event) => onClosed(event as { code: number; reason: string }) },
    onNonLazyError: () => undefined,
  });
  return {
    client,
    closed,
    subscribe(document, variables) {
      const collected = { items: [] } as unknown as Collected<never>;
      collected.ended = new Promise<void>((resolve, reject) => {
        client.subscribe({ query: print(document), variables: variables as Record<string, unknown> }, {
          next: (value) => {
            if (value.errors) collected.errors = value.errors;
            if (value.data) collected.items.push(value.data as never);
          },
          error: (error) => {
            collected.errors = Array.isArray(error) ? error : [{ message: String(error) }];
            reject(new Error(`subscription failed: ${JSON.stringify(collected.errors)}`));
          },
          complete: () => resolve(),
        });
      });
      collected.ended.catch(() => undefined);
      return collected;
    },
    execute(document, variables) {
      return new Promise((resolve, reject) => {
        let result: { data?: never; errors?: readonly GraphQLFormattedError[] } | undefined;
        client.subscribe({ query: print(document), variables: variables as Record<string, unknown> }, {
          next: (value) => (result = value as typeof result),
          error: (error) => (Array.isArray(error) ? resolve({ errors: error }) : reject(error)),
          complete: () => resolve(result ?? {}),
        });
      });
    },
  };
}
