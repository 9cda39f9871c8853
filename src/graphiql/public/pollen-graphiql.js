// Mounts GraphiQL for Pollen. Plain browser script, served as is (no build step);
// React, ReactDOM, GraphiQL and graphqlWs are UMD globals loaded before it.
(function mountPollenGraphiQL() {
  'use strict';

  const GRAPHQL_HTTP_URL = location.origin + '/graphql';
  const GRAPHQL_WS_URL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';

  const DEFAULT_QUERY = `# Welcome to Pollen GraphiQL.
#
# Add { "Authorization": "Bearer <accessToken>" }
# in Headers (panel below); get a token with the
# \`login\` mutation.

query Me {
  me {
    id
    username
    email
  }
}
`;

  function errorResult(message) {
    return { errors: [{ message }] };
  }

  /** Header names are case-insensitive, but GraphiQL hands them over as typed. */
  function findHeader(headers, lowerCaseName) {
    for (const [name, value] of Object.entries(headers || {})) {
      if (name.toLowerCase() === lowerCaseName) return value == null ? undefined : String(value);
    }
    return undefined;
  }

  /** "query" | "mutation" | "subscription", or null when the operation can't be told. */
  function operationTypeOf(query, operationName) {
    const graphql = window.GraphiQL && window.GraphiQL.GraphQL;
    if (graphql && graphql.parse && graphql.getOperationAST) {
      try {
        const operation = graphql.getOperationAST(graphql.parse(query), operationName || undefined);
        return operation ? operation.operation : null;
      } catch {
        return null; // Syntax error: let the server report it over HTTP.
      }
    }
    return operationTypeFromText(query, operationName);
  }

  /** Fallback when graphql-js isn't exposed: scans top-level tokens only. */
  function operationTypeFromText(query, operationName) {
    const withoutStringsAndComments = query.replace(/"""[\s\S]*?"""|"(?:[^"\\\n]|\\.)*"|#[^\n\r]*/g, ' ');
    const tokens = withoutStringsAndComments.match(/[{}()]|\$?[_A-Za-z][_0-9A-Za-z]*/g) || [];
    const operations = [];
    let depth = 0;
    let definitionKeyword = null; // keyword of the top-level definition being read
    let definitionNamed = false;
    for (const token of tokens) {
      if (token === '{' || token === '(') {
        if (depth === 0 && token === '{' && definitionKeyword === null) {
          operations.push({ type: 'query', name: undefined }); // shorthand `{ ... }`
        }
        if (depth === 0 && token === '{') definitionKeyword = 'body';
        depth += 1;
      } else if (token === '}' || token === ')') {
        depth = Math.max(0, depth - 1);
        if (depth === 0 && token === '}') definitionKeyword = null;
      } else if (depth === 0) {
        if (definitionKeyword === null) {
          definitionKeyword = token;
          definitionNamed = false;
          if (token === 'query' || token === 'mutation' || token === 'subscription') {
            operations.push({ type: token, name: undefined });
          }
        } else if (!definitionNamed && definitionKeyword !== 'body') {
          definitionNamed = true;
          const current = operations[operations.length - 1];
          if (current && current.type === definitionKeyword && current.name === undefined) current.name = token;
        }
      }
    }
    const selected = operationName
      ? operations.find((operation) => operation.name === operationName)
      : operations.length === 1
        ? operations[0]
        : undefined;
    return selected ? selected.type : null;
  }

  async function fetchOverHttp(graphQLParams, headers) {
    const requestHeaders = {};
    for (const [name, value] of Object.entries(headers || {})) {
      // Ours must win, without sending two content-type values.
      if (name.toLowerCase() !== 'content-type' && value != null) requestHeaders[name] = String(value);
    }
    requestHeaders['content-type'] = 'application/json';
    let response;
    try {
      response = await fetch(GRAPHQL_HTTP_URL, {
        method: 'POST',
        headers: requestHeaders,
        body: JSON.stringify(graphQLParams),
        credentials: 'same-origin',
      });
    } catch (error) {
      return errorResult(`Request failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    const body = await response.text();
    try {
      return JSON.parse(body);
    } catch {
      return errorResult(`HTTP ${response.status} ${response.statusText}: ${body.slice(0, 2000)}`);
    }
  }

  const CLOSE_CODE_HINTS = {
    4401: 'Unauthorized: check the Authorization header',
    4403: 'Forbidden: check the Authorization header',
  };

  /** Turns whatever graphql-ws hands to sink.error into a GraphQL-shaped result. */
  function webSocketErrorResult(error) {
    if (Array.isArray(error)) return { errors: error }; // GraphQL errors sent by the server
    if (error && typeof error === 'object' && 'code' in error && 'reason' in error) {
      const detail = error.reason || CLOSE_CODE_HINTS[error.code] || 'connection lost';
      return errorResult(`WebSocket closed with code ${error.code}: ${detail}`);
    }
    if (error instanceof Error) return errorResult(error.message);
    if (error && typeof error === 'object' && error.type === 'error') {
      return errorResult(`WebSocket error: could not connect to ${GRAPHQL_WS_URL}`);
    }
    return errorResult(`Subscription failed: ${String(error)}`);
  }

  function isRetryableClose(errorOrCloseEvent) {
    const code = errorOrCloseEvent && errorOrCloseEvent.code;
    // Application close codes (4xxx, e.g. 4403 Forbidden) won't change by retrying,
    // except 4499 (client terminated a frozen socket). graphql-ws retries 4403 by default.
    return typeof code === 'number' && (code < 4000 || code === 4499);
  }

  // One client per Authorization value: connectionParams are only sent on connect.
  let webSocketConnection = { authorization: undefined, client: null };

  function webSocketClientFor(authorization) {
    if (webSocketConnection.client && webSocketConnection.authorization === authorization) {
      return webSocketConnection.client;
    }
    if (webSocketConnection.client) webSocketConnection.client.dispose();
    const client = graphqlWs.createClient({
      url: GRAPHQL_WS_URL,
      connectionParams: authorization === undefined ? {} : { authorization },
      lazy: true,
      // Fail fast in an IDE: the default (5 attempts, exponential backoff) looks like a hang.
      retryAttempts: 2,
      retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, 500 * 2 ** retries)),
      shouldRetry: isRetryableClose,
    });
    webSocketConnection = { authorization, client };
    return client;
  }

  /** An observable as GraphiQL expects for subscriptions; stop() unsubscribes. */
  function subscribeOverWebSocket(graphQLParams, headers) {
    const client = webSocketClientFor(findHeader(headers, 'authorization'));
    return {
      subscribe(observer) {
        const unsubscribe = client.subscribe(
          {
            query: graphQLParams.query,
            variables: graphQLParams.variables || undefined,
            operationName: graphQLParams.operationName || undefined,
          },
          {
            next: (result) => observer.next(result),
            // Shown as a result instead of an opaque CloseEvent, then the run ends.
            error: (error) => {
              observer.next(webSocketErrorResult(error));
              observer.complete();
            },
            complete: () => observer.complete(),
          },
        );
        return { unsubscribe };
      },
    };
  }

  function fetcher(graphQLParams, options) {
    const headers = (options && options.headers) || {};
    if (operationTypeOf(graphQLParams.query, graphQLParams.operationName) === 'subscription') {
      return subscribeOverWebSocket(graphQLParams, headers);
    }
    return fetchOverHttp(graphQLParams, headers);
  }

  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultQuery: DEFAULT_QUERY,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      defaultEditorToolsVisibility: 'headers',
    }),
  );
})();
