import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Router, type Request } from 'express';

const ASSETS_URL_PATH = '/graphiql/assets';
const GRAPHQL_PATH = '/graphql';
const ASSET_MAX_AGE_MS = 3600 * 1000; // sent as "Cache-Control: public, max-age=3600"

// Nothing is loaded from a CDN: every script, style, font and image comes from this
// origin (fonts and icons are data: URLs inside graphiql.min.css).
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  // GraphiQL and CodeMirror set inline style attributes at runtime.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self' ws: wss:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const requireFromHere = createRequire(import.meta.url);

function packageDirectory(packageName: string): string {
  return path.dirname(requireFromHere.resolve(`${packageName}/package.json`));
}

// Both src/graphiql/ and its tsc output dist/graphiql/ sit two levels below the repository root;
// the browser script is not compiled, so it is always read from src/.
const PUBLIC_DIRECTORY = fileURLToPath(new URL('../../src/graphiql/public/', import.meta.url));

/** Public file name -> absolute path. Only these files are ever served. */
function buildAssetAllowList(): Map<string, string> {
  const graphiqlDirectory = packageDirectory('graphiql');
  const allowList = new Map<string, string>([
    ['graphiql.min.js', path.join(graphiqlDirectory, 'graphiql.min.js')],
    ['graphiql.min.css', path.join(graphiqlDirectory, 'graphiql.min.css')],
    ['react.production.min.js', path.join(packageDirectory('react'), 'umd', 'react.production.min.js')],
    [
      'react-dom.production.min.js',
      path.join(packageDirectory('react-dom'), 'umd', 'react-dom.production.min.js'),
    ],
    ['graphql-ws.min.js', path.join(packageDirectory('graphql-ws'), 'umd', 'graphql-ws.min.js')],
    ['pollen-graphiql.js', path.join(PUBLIC_DIRECTORY, 'pollen-graphiql.js')],
  ]);
  // Fail at startup rather than with a 404 in someone's browser.
  for (const [fileName, filePath] of allowList) {
    if (!existsSync(filePath)) {
      throw new Error(`GraphiQL asset ${fileName} not found at ${filePath}`);
    }
  }
  return allowList;
}

// Script order matters: GraphiQL's UMD build reads the React and ReactDOM globals.
const GRAPHIQL_PAGE_HTML = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Pollen GraphiQL</title>
    <!-- An empty icon, so browsers don't request /favicon.ico and log a 404. -->
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="${ASSETS_URL_PATH}/graphiql.min.css" />
    <style>
      html, body, #graphiql { height: 100%; margin: 0; }
    </style>
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <script src="${ASSETS_URL_PATH}/react.production.min.js"></script>
    <script src="${ASSETS_URL_PATH}/react-dom.production.min.js"></script>
    <script src="${ASSETS_URL_PATH}/graphql-ws.min.js"></script>
    <script src="${ASSETS_URL_PATH}/graphiql.min.js"></script>
    <script src="${ASSETS_URL_PATH}/pollen-graphiql.js"></script>
  </body>
</html>
`;

function prefersHtml(req: Request): boolean {
  return req.accepts(['application/json', 'application/graphql-response+json', 'text/html']) === 'text/html';
}

/**
 * Serves GraphiQL at GET /graphql for browsers (Accept prefers text/html) and its
 * assets under /graphiql/assets/. Mount it before the GraphQL middleware: every other
 * request to /graphql is passed on with next().
 */
export function graphiqlRouter(): Router {
  const assetAllowList = buildAssetAllowList();
  const router = Router();

  router.get(`${ASSETS_URL_PATH}/:fileName`, (req, res, next) => {
    const filePath = assetAllowList.get(req.params.fileName);
    if (filePath === undefined) {
      next();
      return;
    }
    // dotfiles: 'allow' because the paths are allow-listed, and send() would otherwise
    // 404 whenever the checkout itself lives under a dot-directory.
    res.sendFile(filePath, { maxAge: ASSET_MAX_AGE_MS, dotfiles: 'allow' }, (error) => {
      if (error && !res.headersSent) next(error);
    });
  });

  router.get(GRAPHQL_PATH, (req, res, next) => {
    // The same URL answers GraphQL over GET, so caches must key on Accept.
    res.vary('Accept');
    if (!prefersHtml(req)) {
      next();
      return;
    }
    res
      .status(200)
      .set({
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Security-Policy': CONTENT_SECURITY_POLICY,
        'Cache-Control': 'no-cache',
        'X-Content-Type-Options': 'nosniff',
      })
      .send(GRAPHIQL_PAGE_HTML);
  });

  return router;
}
