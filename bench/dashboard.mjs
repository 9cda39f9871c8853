// The dashboard's budgets, measured in Debian's Chromium against a real Pollen:
//   - initial JavaScript: what the page at / loads before it can run, gzipped: at most 300 KB;
//   - a run's page with `rounds` rounds x 8 metrics: drawn within 300 ms of its data;
//   - `runs` such runs overlaid on the comparison page: still interactive (each input answered
//     by a new frame within 100 ms at the 95th percentile).
//
//   node bench/dashboard.mjs [--rounds=100] [--runs=10] [--samples=5] [--moves=120]
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS } from '../test/support/chromium.mjs';
import {
  BENCH_PASSWORD, createProject, createTrainingConfig, DIGITS_APP, finishedJob, insertFinishedJobs, kb, loadAverage, ms, onCleanup,
  option, percentile, printTable, progress, registerUser, runBenchmark, startFerretDB, startPollen, summarize, uploadApp, zipDirectory,
} from './lib.mjs';

const DATABASE = 'pollen';
const BUDGET = { initialJsBytes: 300_000, drawMs: 300, inputMs: 100 };
// Eight metric names, each reported by one phase, as a Flower app's strategy would.
const METRICS = {
  TRAIN: ['train_loss', 'train_acc'],
  EVALUATE: ['eval_loss', 'eval_acc', 'eval_f1'],
  SERVER_EVALUATE: ['test_loss', 'test_acc', 'test_f1'],
};
const METRIC_COUNT = Object.values(METRICS).flat().length;

await runBenchmark(async () => {
  const rounds = option('rounds', 100);
  const runCount = option('runs', 10);
  const samples = option('samples', 5);
  const moves = option('moves', 120);
  const loadBefore = loadAverage();

  const ferretdb = await startFerretDB();
  const pollen = await startPollen({ env: { MONGODB_URI: `${ferretdb.uri}${DATABASE}`, MAX_CONCURRENT_JOBS: '0' } });
  const origin = new URL(pollen.url).origin;

  progress('initial JavaScript');
  const initial = await initialAssets(origin);

  progress(`seeding ${runCount} finished runs of ${rounds} rounds x ${METRIC_COUNT} metrics`);
  const { username, jobIds } = await seed(pollen, ferretdb.uri, { rounds, runCount });

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  onCleanup(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // Signed in as the dashboard signs in: the cookie lands in this context.
  const signIn = await context.request.post(`${origin}/auth/sign-in`, { data: { username, password: BENCH_PASSWORD }, headers: { origin } });
  if (!signIn.ok()) throw new Error(`sign-in failed: ${signIn.status()} ${await signIn.text()}`);
  const page = await context.newPage();

  progress(`a run's page, ${samples} loads`);
  const jobPage = [];
  for (let i = 0; i < samples; i++) jobPage.push(await loadJobPage(page, origin, jobIds[0], rounds, i));

  progress(`${runCount} runs overlaid`);
  const comparison = await loadComparison(page, origin, jobIds, rounds);
  const hover = await hoverLatencies(page, moves);
  const toggles = await toggleLatencies(page);

  const loadAfter = loadAverage();
  const jsBytes = initial.filter((a) => a.type === 'js').reduce((sum, a) => sum + a.gzip, 0);
  console.log(`\ndashboard: Chromium ${browser.version()}, 1280x800; load average before ${loadBefore}, after ${loadAfter}`);
  console.log('\nWhat the page at / loads first (gzip -9):');
  printTable(['file', 'bytes', 'gzip KB'], initial.map((a) => [a.path, a.bytes, kb(a.gzip)]));

  const draw = summarize(jobPage.map((s) => s.drawMs));
  const load = summarize(jobPage.map((s) => s.loadMs));
  const hovering = summarize(hover.latencies);
  const toggling = summarize(toggles.latencies);
  console.log();
  printTable(['measure', 'p50', 'p90', 'max', 'samples'], [
    [`run page, ${rounds} rounds x ${METRIC_COUNT} metrics: data -> drawn, ms`, ms(draw.p50), ms(draw.p90), ms(draw.max), draw.count],
    ['run page: navigation -> drawn, ms', ms(load.p50), ms(load.p90), ms(load.max), load.count],
    [`${runCount} runs overlaid: hover -> frame, ms`, ms(hovering.p50), ms(hovering.p90), ms(hovering.max), hovering.count],
    [`${runCount} runs overlaid: phase toggle -> frame, ms`, ms(toggling.p50), ms(toggling.p90), ms(toggling.max), toggling.count],
  ]);
  console.log(`\n${runCount} runs overlaid: ${comparison.points} points in ${comparison.charts} charts, navigation -> all drawn ` +
    `${ms(comparison.loadMs)} ms; long tasks while hovering: ${hover.longTasks.length} (longest ${ms(Math.max(0, ...hover.longTasks))} ms), ` +
    `while toggling: ${toggles.longTasks.length} (longest ${ms(Math.max(0, ...toggles.longTasks))} ms)`);

  const p95 = (values) => percentile([...values].sort((a, b) => a - b), 95);
  const verdicts = [
    [`initial JavaScript ${kb(jsBytes)} KB gzipped`, `<= ${BUDGET.initialJsBytes / 1000} KB`, jsBytes <= BUDGET.initialJsBytes],
    [`run page drawn ${ms(draw.max)} ms after its data (worst of ${draw.count})`, `<= ${BUDGET.drawMs} ms`, draw.max <= BUDGET.drawMs],
    [`hover answered at p95 ${ms(p95(hover.latencies))} ms`, `<= ${BUDGET.inputMs} ms`, p95(hover.latencies) <= BUDGET.inputMs],
    [`phase toggle answered at p95 ${ms(p95(toggles.latencies))} ms`, `<= ${BUDGET.inputMs} ms`, p95(toggles.latencies) <= BUDGET.inputMs],
  ];
  console.log();
  printTable(['budget', 'target', 'verdict'], verdicts.map(([what, target, met]) => [what, target, met ? 'met' : 'MISSED']));
});

/** The page's own scripts, module preloads and stylesheets, with their sizes raw and gzipped. */
async function initialAssets(origin) {
  const html = await (await fetch(`${origin}/`)).text();
  const paths = [...html.matchAll(/<(?:script[^>]*\bsrc|link[^>]*\bhref)="(\/assets\/[^"]+)"/g)].map((match) => match[1]);
  return Promise.all(paths.map(async (path) => {
    const bytes = Buffer.from(await (await fetch(`${origin}${path}`)).arrayBuffer());
    return { path, type: path.endsWith('.css') ? 'css' : 'js', bytes: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  }));
}

/** One user, one project, the digits app, a config and `runCount` finished runs, written straight into the database. */
async function seed(pollen, ferretdbUri, { rounds, runCount }) {
  const username = `dashboard${Date.now()}`;
  const user = await registerUser(pollen, username);
  const projectId = await createProject(pollen, user.token, `Dashboard bench ${username}`);
  const appId = await uploadApp(pollen, user.token, projectId, await zipDirectory(DIGITS_APP), 'digits-app.zip');
  const configId = await createTrainingConfig(pollen, user.token, projectId, { rounds, clients: 2 });
  const seeded = Array.from({ length: runCount }, (_, run) => finishedJob({
    projectId, appId, configId, userId: user.userId, createdAt: new Date(Date.now() - (runCount - run) * 3_600_000), rounds,
    flowerRunId: String(2_000_000_000 + run),
    metricsOf: (round) => (round === 0 ? [] : Object.entries(METRICS).map(([phase, names]) => [phase, Object.fromEntries(names.map((name, i) => {
      // Curves that differ by run and metric, with some noise, as real ones do.
      const trend = Math.exp(-round / (20 + 5 * run + 3 * i));
      return [name, name.includes('loss') ? 2 * trend + 0.05 * Math.random() : 1 - 0.9 * trend - 0.02 * Math.random()];
    }))])),
  }));
  await insertFinishedJobs(ferretdbUri, DATABASE, seeded);
  return { username, jobIds: seeded.map(({ job }) => job._id.toHexString()) };
}

/**
 * Opens a run's page afresh (a new document each time) and reads the page's own marks: when its
 * metrics arrived (pollen:metrics-received) and the frame that showed them drawn (pollen:charts-drawn).
 */
async function loadJobPage(page, origin, jobId, rounds, sample) {
  await page.goto(`${origin}/?sample=${sample}#/jobs/${jobId}`);
  await page.waitForFunction(() => performance.getEntriesByName('pollen:charts-drawn').length > 0, undefined, { timeout: 60_000 });
  const figures = await page.evaluate(() => {
    const [received] = performance.getEntriesByName('pollen:metrics-received');
    const [drawn] = performance.getEntriesByName('pollen:charts-drawn');
    const points = [...document.querySelectorAll('figure.chart')].map((chart) => Number(chart.dataset.points));
    return { drawMs: drawn.startTime - received.startTime, loadMs: drawn.startTime, points };
  });
  if (figures.points.length !== METRIC_COUNT || figures.points.some((points) => points !== rounds)) {
    throw new Error(`the run's page drew ${JSON.stringify(figures.points)} points per chart, not ${rounds} in each of ${METRIC_COUNT}`);
  }
  return figures;
}

async function loadComparison(page, origin, jobIds, rounds) {
  await page.goto(`${origin}/?compare#/compare?jobs=${jobIds.join(',')}`);
  const expected = jobIds.length * rounds;
  await page.waitForFunction(({ charts, points }) => {
    const drawn = [...document.querySelectorAll('figure.chart')].map((chart) => Number(chart.dataset.points));
    return drawn.length === charts && drawn.every((count) => count === points);
  }, { charts: METRIC_COUNT, points: expected }, { timeout: 120_000 });
  const loadMs = await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve(performance.now()))));
  return { loadMs, charts: METRIC_COUNT, points: METRIC_COUNT * expected };
}

/**
 * Input latency as the user feels it: from an input event's timestamp to the end of the frame
 * that shows its effect (the second animation frame after it), and the long tasks meanwhile.
 */
async function measureInputs(page, eventType, act) {
  await page.evaluate((type) => {
    window.__bench = { latencies: [], longTasks: [] };
    window.__benchObserver = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) window.__bench.longTasks.push(entry.duration);
    });
    window.__benchObserver.observe({ type: 'longtask' });
    window.__benchListener = (event) => {
      const at = event.timeStamp;
      requestAnimationFrame(() => requestAnimationFrame(() => window.__bench.latencies.push(performance.now() - at)));
    };
    document.addEventListener(type, window.__benchListener, { capture: true });
  }, eventType);
  await act();
  await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 300)));
  return page.evaluate((type) => {
    window.__benchObserver.disconnect();
    document.removeEventListener(type, window.__benchListener, { capture: true });
    return window.__bench;
  }, eventType);
}

/** The pointer sweeps back and forth over the first chart: every chart's cursor and legend follow it. */
async function hoverLatencies(page, moves) {
  const overlay = page.locator('figure.chart .u-over').first();
  await overlay.scrollIntoViewIfNeeded();
  const plot = await overlay.boundingBox();
  return measureInputs(page, 'pointermove', async () => {
    for (let i = 0; i < moves; i++) {
      const x = plot.x + 2 + ((i % 40) / 40) * (plot.width - 4);
      await page.mouse.move(x, plot.y + plot.height / 2);
    }
  });
}

/** A phase switched off and on again, three times: every chart is drawn anew with other lines. */
async function toggleLatencies(page) {
  const phase = page.getByRole('checkbox', { name: 'evaluate', exact: true });
  return measureInputs(page, 'click', async () => {
    for (let i = 0; i < 6; i++) {
      await phase.click();
      await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    }
  });
}
