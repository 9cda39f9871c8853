import { mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser, Page, WebSocketRoute } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zipDirectory } from './support/fixtures.js';
import { launchChromium, REPO_ROOT, signUp, usePollen, watchPage } from './support/testkit.js';

// The pictures of each page; `DASHBOARD_SCREENSHOTS=docs/screenshots` refreshes the README's.
const SCREENSHOTS = path.resolve(REPO_ROOT, process.env.DASHBOARD_SCREENSHOTS ?? path.join(tmpdir(), 'pollen-dashboard-screenshots'));
const PASSWORD = 'Pollen!2026';
const FINISHED = /^(completed|failed|cancelled)$/;

const pollen = usePollen({ env: { MAX_CONCURRENT_JOBS: '1' } });
let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
  mkdirSync(SCREENSHOTS, { recursive: true });
});
afterAll(async () => {
  await browser?.close();
});

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Every form control on the page has a name a screen reader can say. */
async function unlabelledControls(page: Page): Promise<string[]> {
  return page.locator('input, select, textarea, button').evaluateAll((elements) => elements
    .filter((element) => !(element as HTMLInputElement).labels?.length && !element.getAttribute('aria-label') && !element.textContent?.trim())
    .map((element) => element.outerHTML));
}

/** The numbers a chart draws, read from its data table: round -> the values of its series. */
async function chartRows(page: Page, metric: string): Promise<string[][]> {
  const chart = page.locator(`figure[data-metric="${metric}"]`);
  const details = chart.locator('details');
  if (!(await details.evaluate((element) => (element as HTMLDetailsElement).open))) await details.locator('summary').click();
  await chart.locator('.chart-table tbody tr').first().waitFor();
  return chart.locator('.chart-table tbody tr').evaluateAll((rows) => rows.map((row) => Array.from(row.children, (cell) => cell.textContent ?? '')));
}

/** What the button's download saved. */
async function download(page: Page, button: string): Promise<Buffer> {
  const [saved] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: button, exact: true }).click()]);
  return readFileSync(await saved.path());
}

async function status(page: Page): Promise<string> {
  return page.locator('.state-line .status').innerText().then((text) => text.toLowerCase());
}

describe('the dashboard, walked through by the people who train', () => {
  it('takes an owner from signing up to a finished run, its live chart, its results and a comparison; a viewer only looks', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const watched = watchPage(page, pollen.origin);

    // The page's graphql-ws socket goes through the test, which reads what the page subscribes to
    // and can cut the connection as a flaky network would.
    const sockets: Array<{ page: WebSocketRoute; server: WebSocketRoute }> = [];
    const metricSubscriptions: Array<number | null> = [];
    await page.routeWebSocket(/\/graphql$/, (socket) => {
      const server = socket.connectToServer();
      sockets.push({ page: socket, server });
      socket.onMessage((message) => {
        const sent = JSON.parse(String(message)) as { type: string; payload?: { query: string; variables?: { fromRound?: number } } };
        if (sent.type === 'subscribe' && sent.payload!.query.includes('roundMetrics')) metricSubscriptions.push(sent.payload!.variables?.fromRound ?? null);
        server.send(message);
      });
      server.onMessage((message) => socket.send(message));
    });

    // Sign up.
    await page.goto(pollen.origin);
    await screenshot(page, '01-sign-in');
    await page.getByRole('button', { name: 'Create an account' }).click();
    await page.getByLabel('Username').fill('dashboard_owner');
    await page.getByLabel('Email').fill('dashboard_owner@example.com');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Create account' }).click();

    // Create a project.
    await page.getByRole('heading', { name: 'Projects', level: 1 }).waitFor();
    await page.getByText('New project').click();
    await page.getByLabel('Name', { exact: true }).fill('Handwritten digits');
    await page.getByLabel('Description').fill('Softmax regression on scikit-learn\'s digits, two clients.');
    await page.getByRole('button', { name: 'Create project' }).click();
    await page.waitForURL(/#\/projects\/[0-9a-f]{24}\/apps$/);
    const projectId = page.url().split('/').at(-2)!;

    // Upload the example app; an archive Pollen refuses says why, in words.
    const archiveInput = page.getByLabel("ZIP archive of the app's folder");
    await archiveInput.setInputFiles({ name: 'notes.zip', mimeType: 'application/zip', buffer: Buffer.from('just some notes') });
    await page.getByRole('button', { name: 'Upload' }).click();
    await expect.poll(() => page.getByRole('alert').innerText()).toMatch(/^This file is not a ZIP archive\. .*end-of-central-directory/);
    await archiveInput.setInputFiles({
      name: 'digits-app.zip', mimeType: 'application/zip', buffer: await zipDirectory(path.join(REPO_ROOT, 'examples/digits-app')),
    });
    await page.getByRole('button', { name: 'Upload' }).click();
    await expect.poll(() => page.getByRole('status').innerText()).toBe('Uploaded digits-app 1.0.0.');
    await expect.poll(() => page.getByRole('heading', { name: /digits-app/ }).count()).toBe(1);
    await screenshot(page, '03-project-apps');

    // Make a config, and a second version of it: the versions stand side by side.
    await page.getByRole('link', { name: 'Configs' }).click();
    await page.getByRole('heading', { name: 'New config' }).waitFor();
    await page.getByLabel('Name', { exact: true }).fill('quick');
    await page.getByLabel('Rounds').fill('3');
    await page.getByLabel('Learning rate').fill('0.1');
    await page.getByRole('button', { name: 'Save config' }).click();
    await page.getByRole('heading', { name: 'quick' }).waitFor();
    await page.getByRole('button', { name: 'Start from v1' }).click();
    await page.getByLabel('Rounds').fill('2');
    await page.getByRole('button', { name: 'Save config' }).click();
    await page.getByRole('columnheader', { name: 'Version 2' }).waitFor();
    expect(await page.locator('table.versions tr', { hasText: 'Rounds' }).innerText()).toMatch(/Rounds\s+3\s+2\s*\(changed\)/);
    await screenshot(page, '04-project-configs');
    expect(await unlabelledControls(page)).toEqual([]);

    // Start a run of v1 (3 rounds): its page opens.
    await page.getByRole('link', { name: 'Runs' }).click();
    await page.getByRole('combobox', { name: 'Config' }).selectOption({ label: 'quick v1 (3 rounds, 2 clients)' });
    await page.getByRole('button', { name: 'Start run' }).click();
    await page.waitForURL(/#\/jobs\/[0-9a-f]{24}$/);
    const firstJob = page.url().split('/').pop()!;

    // The training-loss chart gains a point per round while the run goes on. Once it has its first,
    // the socket is cut: the page reconnects and resumes the stream from the newest round it holds.
    const trainPoints = page.locator('figure[data-metric="train_loss"]');
    const seen: number[] = [];
    let resumedFrom: number | undefined;
    for (let finished = false; !finished; await page.waitForTimeout(200)) {
      finished = FINISHED.test(await status(page));
      const points = Number(await trainPoints.getAttribute('data-points', { timeout: 1_000 }).catch(() => '0'));
      if (points <= (seen.at(-1) ?? 0)) continue;
      seen.push(points);
      if (points > 1 || resumedFrom !== undefined) continue;
      await screenshot(page, '05-run-live');
      resumedFrom = Math.max(...(await page.locator('figure.chart').evaluateAll((charts) =>
        charts.map((chart) => Number((chart as HTMLElement).dataset.lastRound)))));
      const subscriptionsBefore = metricSubscriptions.length;
      const { page: pageSide, server } = sockets.at(-1)!;
      await server.close();
      await pageSide.close({ code: 1012, reason: 'network went away' });
      await expect.poll(() => metricSubscriptions.length, { timeout: 30_000 }).toBe(subscriptionsBefore + 1);
    }
    expect(await status(page)).toBe('completed');
    expect(seen).toEqual([1, 2, 3]);
    // Once from round 0, once more from where the stream broke (graphql-ws did not re-send the first).
    expect(metricSubscriptions).toHaveLength(2);
    expect(metricSubscriptions[0]).toBe(0);
    expect(metricSubscriptions[1]).toBeGreaterThanOrEqual(resumedFrom!);
    // No gap and no duplicate: each round once, in both kinds of chart.
    expect((await chartRows(page, 'train_loss')).map(([round]) => round)).toEqual(['1', '2', '3']);
    expect((await chartRows(page, 'test_acc')).map(([round]) => round)).toEqual(['0', '1', '2', '3']);
    await screenshot(page, '06-run-completed');

    // Its results: the final model, in both formats, and the metrics as CSV.
    const finalModel = await download(page, 'Download final model npz');
    expect(finalModel.subarray(0, 4)).toEqual(Buffer.from('PK\x03\x04')); // numpy's npz is a ZIP of .npy files
    const safetensors = await download(page, 'Download final model safetensors');
    const headerLength = Number(safetensors.readBigUInt64LE(0));
    expect(Object.keys(JSON.parse(safetensors.subarray(8, 8 + headerLength).toString()))).toContain('__metadata__');
    const rows = (await download(page, 'Metrics (CSV)')).toString().trim().split('\r\n');
    expect(rows[0]).toBe('round,phase,recorded_at,eval_acc,eval_loss,test_acc,test_loss,train_loss');
    expect(rows.slice(1).map((row) => row.split(',').slice(0, 2).join(' '))).toEqual([
      '0 SERVER_EVALUATE', '1 TRAIN', '1 EVALUATE', '1 SERVER_EVALUATE', '2 TRAIN', '2 EVALUATE', '2 SERVER_EVALUATE',
      '3 TRAIN', '3 EVALUATE', '3 SERVER_EVALUATE',
    ]);

    // A second run: a fork of the first from its round 2, with v2 (2 more rounds), compared with it as it goes.
    await page.getByRole('button', { name: 'Fork from round 2' }).click();
    await page.getByRole('combobox', { name: 'Config' }).selectOption({ label: 'quick v2 (2 more rounds, 2 clients)' });
    await page.getByRole('button', { name: 'Start the fork' }).click();
    await page.waitForURL((url) => url.hash.startsWith('#/jobs/') && !url.hash.endsWith(firstJob));
    const secondJob = page.url().split('/').pop()!;
    await expect.poll(() => page.locator('.lineage').innerText()).toMatch(new RegExp(`Forked from run ${firstJob.slice(-6)} .* at round 2`));
    await page.getByRole('link', { name: 'Handwritten digits' }).click();
    await expect.poll(() => page.locator('table.jobs tbody tr').count()).toBe(2);
    await screenshot(page, '02-project-runs');
    for (const job of [firstJob, secondJob]) await page.locator(`tr[data-job="${job}"] input[type="checkbox"]`).check();
    await page.getByRole('link', { name: 'Compare 2 selected' }).click();
    await page.waitForURL(/#\/compare\?jobs=/);
    // The fork's line starts on its parent's rounds 1 and 2, then goes on with its own 3 and 4.
    const compared = page.locator('figure[data-metric="train_loss"]');
    await expect.poll(async () => Number(await compared.getAttribute('data-points')), { timeout: 300_000, interval: 500 }).toBe(7);
    const compareRows = await chartRows(page, 'train_loss');
    expect(compareRows.map(([round]) => round)).toEqual(['1', '2', '3', '4']);
    expect(compareRows.slice(0, 2).map(([, parent, fork]) => parent === fork)).toEqual([true, true]);
    expect(compareRows[3]![1]).toBe('');
    expect(await compared.locator('.chart-table thead th').allInnerTexts())
      .toEqual(['Round', `${firstJob.slice(-6)} train`, `${secondJob.slice(-6)} train`]);
    await screenshot(page, '07-compare');

    // Invite a viewer.
    const viewer = await signUp(pollen, 'dashboard_viewer');
    await page.goto(`${pollen.origin}/#/projects/${projectId}/members`);
    await page.getByLabel('Username').fill(viewer.session.user.username);
    await page.getByRole('combobox', { name: 'Role', exact: true }).selectOption('VIEWER');
    await page.getByRole('button', { name: 'Add member' }).click();
    await page.getByRole('row', { name: /dashboard_viewer/ }).waitFor();
    await screenshot(page, '08-project-members');
    expect(watched.consoleErrors).toEqual([]);
    expect(watched.foreignRequests).toEqual([]);

    // The viewer signs in with the keyboard alone, in a browser of their own, and sees everything but
    // what a viewer may not do.
    const viewerContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const viewerPage = await viewerContext.newPage();
    const viewerWatched = watchPage(viewerPage, pollen.origin);
    await viewerPage.goto(pollen.origin);
    await viewerPage.getByLabel('Username or email').focus();
    await viewerPage.keyboard.type('dashboard_viewer');
    await viewerPage.keyboard.press('Tab');
    await viewerPage.keyboard.type(PASSWORD);
    await viewerPage.keyboard.press('Enter');
    await viewerPage.getByRole('link', { name: 'Handwritten digits' }).click();
    await viewerPage.locator('table.jobs tbody tr').first().waitFor();
    expect(await viewerPage.getByText('Your role: viewer').count()).toBe(1);
    for (const tab of ['Runs', 'Apps', 'Configs', 'Nodes', 'Members']) {
      await viewerPage.getByRole('link', { name: tab, exact: true }).click();
      await viewerPage.locator('.tab-panel h2').first().waitFor();
      expect(await viewerPage.locator('.tab-panel form').count(), `${tab}: no forms for a viewer`).toBe(0);
      expect(await viewerPage.getByRole('button', { name: /Delete|Remove|Deploy|Start from/ }).count(), tab).toBe(0);
    }
    expect(await viewerPage.getByRole('combobox', { name: /Role of/ }).count()).toBe(0);
    await screenshot(viewerPage, '09-viewer-members');
    await viewerPage.goto(`${pollen.origin}/#/jobs/${firstJob}`);
    await viewerPage.locator('figure[data-metric="train_loss"][data-points="3"]').waitFor();
    expect(await viewerPage.getByRole('button', { name: 'Cancel run' }).count()).toBe(0);
    expect(await viewerPage.getByRole('button', { name: /^Fork from round/ }).count()).toBe(0);
    expect(await viewerPage.getByRole('button', { name: 'Download final model npz' }).count()).toBe(1);
    expect(await viewerPage.getByRole('button', { name: 'Metrics (CSV)' }).count()).toBe(1);

    // At phone width the run's page still reads: nothing wider than the screen.
    await viewerPage.setViewportSize({ width: 390, height: 844 });
    await viewerPage.reload();
    await viewerPage.locator('figure[data-metric="train_loss"][data-points="3"]').waitFor();
    expect(await viewerPage.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await screenshot(viewerPage, '10-run-phone');
    expect(viewerWatched.consoleErrors).toEqual([]);
    expect(viewerWatched.foreignRequests).toEqual([]);

    // Signing out ends the session: the sign-in form comes once Pollen has ended it, and a reload
    // (no earlier: it would abort the sign-out request) shows it again.
    await viewerPage.getByRole('button', { name: 'Sign out' }).click();
    await viewerPage.getByRole('heading', { name: 'Sign in' }).waitFor();
    await viewerPage.reload();
    await viewerPage.getByRole('heading', { name: 'Sign in' }).waitFor();
    await context.close();
    await viewerContext.close();
  }, 20 * 60_000);
});

