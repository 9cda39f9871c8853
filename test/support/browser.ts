import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS } from './chromium.mjs';

/** Debian's Chromium, headless, kept off the network: it may only talk to the Pollen under test. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error('Debian chromium is missing: run "bash scripts/setup.sh --test" (npm test does).');
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/** What a page did that it should not: requests to anywhere but `origin`, and errors in its console (CSP violations among them). */
export function watchPage(page: Page, origin: string): { foreignRequests: string[]; consoleErrors: string[] } {
  const watched = { foreignRequests: [] as string[], consoleErrors: [] as string[] };
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith('data:') && !url.startsWith('blob:')) watched.foreignRequests.push(url);
  });
  page.on('console', (message) => {
    if (message.type() === 'error') watched.consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => watched.consoleErrors.push(error.message));
  return watched;
}
