import { ApolloClient, ApolloLink, InMemoryCache } from '@apollo/client';
import { SetContextLink } from '@apollo/client/link/context';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import UploadHttpLink from 'apollo-upload-client/UploadHttpLink.mjs';
import { createClient, type Client } from 'graphql-ws';
import { accessToken } from './session';

/** The dashboard's connection to Pollen: Apollo Client over HTTP and graphql-ws on the same origin. */
export interface Connection {
  client: ApolloClient;
  /** The graphql-ws client: live streams watch it to resume after a lost socket (see live/round-metrics.ts). */
  sockets: Client;
  close(): void;
}

const GRAPHQL_PATH = '/graphql';
const MAX_RETRY_WAIT_MS = 10_000;

/**
 * One per sign-in, so that nothing cached or connected for one user is ever used for another.
 * Every request and every (re)connection asks for a fresh access token; a socket that Pollen
 * closed because the token expired (4403) reconnects with the next one.
 */
export function connect(): Connection {
  const sockets = createClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${GRAPHQL_PATH}`,
    connectionParams: async () => {
      const token = await accessToken();
      return token ? { authorization: `Bearer ${token}` } : {};
    },
    // A dashboard stays open for hours: keep trying, at most every 10 s.
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(MAX_RETRY_WAIT_MS, 500 * 2 ** retries))),
  });
  const withToken = new SetContextLink(async ({ headers }) => {
    const token = await accessToken();
    return { headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) } };
  });
  // Pollen's CSRF protection asks multipart uploads for this header.
  const http = new UploadHttpLink({ uri: GRAPHQL_PATH, headers: { 'apollo-require-preflight': 'true' } });
  const isSubscription = ({ query }: ApolloLink.Operation) => {
    const definition = getMainDefinition(query);
    return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
  };
  const client = new ApolloClient({
    link: ApolloLink.split(isSubscription, new GraphQLWsLink(sockets), withToken.concat(http)),
    cache: new InMemoryCache(),
  });
  return {
    client,
    sockets,
    close() {
      client.stop();
      void sockets.dispose();
    },
  };
}

/**
 * Downloads a file that needs the access token (app archives, metric exports, checkpoints): a
 * link cannot send an Authorization header, so the bytes are fetched and handed to the browser.
 */
export async function download(path: string, fileName: string): Promise<void> {
  const token = await accessToken();
  const response = await fetch(path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (!response.ok) {
    const answer = await response.json().catch(() => undefined) as { errors?: Array<{ message: string }> } | undefined;
    throw new Error(answer?.errors?.[0]?.message ?? `The download failed (${response.status}).`);
  }
  const url = URL.createObjectURL(await response.blob());
  saveLink(url, fileName);
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Has the browser save what a same-origin (or blob:) URL answers, under `fileName`. */
export function saveLink(url: string, fileName: string): void {
  const link = Object.assign(document.createElement('a'), { href: url, download: fileName });
  document.body.append(link);
  link.click();
  link.remove();
}
