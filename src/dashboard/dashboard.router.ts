import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Router, type Request } from 'express';

// Vite writes the bundle beside this file's tsc output: dist/dashboard/web/ (see web/vite.config.ts).
const BUNDLE_DIRECTORY = fileURLToPath(new URL('./web/', import.meta.url));
const ASSETS_URL_PATH = '/assets';
// Asset names carry a hash of their content, so they never change under a name.
const ASSET_MAX_AGE_MS = 365 * 86400 * 1000;
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * Everything comes from this origin, and no inline script or style may run. The WebSocket
 * sources name this host explicitly: older browsers do not count ws: under 'self'.
 */
function contentSecurityPolicy(req: Request): string {
  const host = req.get('host') ?? '';
  const webSockets = HOST.test(host) ? ` ws://${host} wss://${host}` : '';
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self'${webSockets}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/**
 * The dashboard at `/`: its page and its hashed assets, read from the bundle that `npm run build`
 * made. Only the files in the bundle are ever served. GraphiQL stays at /graphql.
 */
export function dashboardRouter(): Router {
  const indexFile = path.join(BUNDLE_DIRECTORY, 'index.html');
  // Fail at startup rather than with a 404 in someone's browser.
  if (!existsSync(indexFile)) throw new Error(`The dashboard bundle is missing (${indexFile}): run "npm run build".`);
  const page = readFileSync(indexFile);
  const assetsDirectory = path.join(BUNDLE_DIRECTORY, 'assets');
  const assets = new Map(readdirSync(assetsDirectory).map((name) => [name, path.join(assetsDirectory, name)]));
  const router = Router();

  router.get('/', (req, res) => {
    res.status(200).set({
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Security-Policy': contentSecurityPolicy(req),
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Cross-Origin-Opener-Policy': 'same-origin',
    }).send(page);
  });

  router.get(`${ASSETS_URL_PATH}/:fileName`, (req, res, next) => {
    const filePath = assets.get(req.params.fileName);
    if (filePath === undefined) {
      next();
      return;
    }
    res.set('X-Content-Type-Options', 'nosniff');
    // dotfiles: 'allow' because the names are allow-listed (the checkout may sit under a dot-directory).
    res.sendFile(filePath, { maxAge: ASSET_MAX_AGE_MS, immutable: true, dotfiles: 'allow' }, (error) => {
      if (error && !res.headersSent) next(error);
    });
  });

  return router;
}
