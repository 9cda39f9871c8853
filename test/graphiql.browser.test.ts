import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, signUp, usePollen, watchPage } from './support/testkit.js';

let browser: Browser;
const pollen = usePollen();
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

describe('GraphiQL in a browser', () => {
  it('loads from Pollen alone, runs a query with an Authorization header and shows the result', async () => {
    const { session } = await signUp(pollen, 'browser_user');
    const page = await browser.newPage();
    const { foreignRequests, consoleErrors } = watchPage(page, pollen.origin);

    await page.goto(pollen.url);
    expect(await page.title()).toBe('Pollen GraphiQL');
    await page.waitForSelector('.graphiql-query-editor .CodeMirror');

    await page.click('.graphiql-editor-tools button[data-name="headers"]');
    await page.evaluate((headers) => {
      const editor = document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror') as unknown as
        { CodeMirror: { setValue(text: string): void } };
      editor.CodeMirror.setValue(headers);
    }, JSON.stringify({ Authorization: `Bearer ${session.accessToken}` }));
    await page.evaluate((query) => {
      const editor = document.querySelector('.graphiql-query-editor .CodeMirror') as unknown as
        { CodeMirror: { setValue(text: string): void } };
      editor.CodeMirror.setValue(query);
    }, 'query WhoAmI { me { username email } }');
    // GraphiQL picks up the operation name after a short debounce.
    await page.waitForTimeout(400);
    await page.click('.graphiql-execute-button');

    const response = page.locator('.graphiql-response');
    await expect.poll(() => response.innerText(), { timeout: 10_000 }).toContain('browser_user@example.com');
    await page.screenshot({ path: `${pollen.dataDir}/graphiql.png` });

    // A subscription goes over graphql-ws with the same header: the socket is authenticated,
    // so an unknown job is NOT_FOUND (anonymous sockets would be UNAUTHENTICATED).
    await page.evaluate((query) => {
      const editor = document.querySelector('.graphiql-query-editor .CodeMirror') as unknown as
        { CodeMirror: { setValue(text: string): void } };
      editor.CodeMirror.setValue(query);
    }, `subscription Watch { trainingJobUpdated(jobId: "${'0'.repeat(24)}") { status } }`);
    await page.waitForTimeout(400);
    await page.click('.graphiql-execute-button');
    await expect.poll(() => response.innerText(), { timeout: 10_000 }).toContain('Training job not found.');
    expect(await response.innerText()).toContain('NOT_FOUND');

    expect(foreignRequests).toEqual([]);
    expect(consoleErrors).toEqual([]);
    await page.close();
  });
});
