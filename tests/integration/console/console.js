// console.js — drives strata-router's web console in the system Chromium
// (headless, through puppeteer-core) for tests/integration/test_console.py
// and tests/bench/console_bench.py:
//
//   node console.js STEP ROUTER_URL SHOT_DIR [ARG...]
//
// Each step opens one page, waits (bounded) for what it needs, writes a
// screenshot to SHOT_DIR/<step>.png and prints one JSON line with what it
// saw; the Python side asserts on it. Exit 1 with {"error": ...} when a
// wait times out. puppeteer-core comes from NODE_PATH (installed by the
// test from this folder's package-lock.json into the build directory).
const puppeteer = require('puppeteer-core');
const path = require('path');

const [step, base, shots, ...args] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = parseInt(process.env.CONSOLE_WAIT_MS || '30000', 10);

async function main() {
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  const out = {};
  const external = [];
  const consoleErrors = [];
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    if (process.env.CONSOLE_THEME) await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: process.env.CONSOLE_THEME }]);
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(base) && !u.startsWith('data:')) external.push(u);
    });
    // a 404 of the /sql probe (no SQL on this server) is expected; every
    // other failed response is reported in `failed`
    const failed = [];
    page.on('response', (r) => {
      if (r.status() >= 400 && !new URL(r.url()).pathname.startsWith('/sql')) failed.push(r.status() + ' ' + r.url());
    });
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    const open = (hash) => page.goto(base + '/' + hash, { waitUntil: 'load', timeout: WAIT_MS });
    const wait = (fn, ...a) => page.waitForFunction(fn, { timeout: WAIT_MS, polling: 100 }, ...a);

    if (step === 'query' || step === 'bench') {
      const q = args[0];
      const range = args[1] || '1h';
      const t0 = Date.now();
      await open('#/query?' + new URLSearchParams({ q, range }).toString());
      await wait(() => document.querySelector('#view-chart[data-series]') && window.__strataChart);
      out.series = parseInt(await page.$eval('#view-chart', (e) => e.dataset.series), 10);
      const c = await page.evaluate(() => window.__strataChart);
      out.request_ms = c.requestMs;
      out.draw_ms = c.drawMs;
      out.sent_at_ms = c.sentAt; // query sent, from navigation start
      out.ttfb_ms = c.ttfbMs;
      out.parse_ms = c.parseMs;
      out.bytes = c.bytes;
      out.first_chart_ms = c.at; // from navigation start
      out.wall_ms = Date.now() - t0;
      out.status = await page.$eval('#query-status', (e) => e.textContent);
      out.pushdown = await page.$eval('#pushdown', (e) => e.textContent).catch(() => null);
      out.legend = await page.$$eval('.u-legend .u-series', (l) => l.length);
      // series toggling: a click on the first legend entry hides it
      if (step === 'query') {
        await page.click('.u-legend .u-series:nth-child(2)');
        out.toggled = await page.$eval('.u-legend .u-series:nth-child(2)', (e) => e.classList.contains('u-off'));
        await page.click('.u-legend .u-series:nth-child(2)');
        await page.mouse.move(0, 0); // no hover focus in the screenshot
      }
    } else if (step === 'table') {
      await open('#/query?' + new URLSearchParams({ q: args[0], tab: 'table' }).toString());
      await wait(() => document.querySelector('#result-table tbody tr'));
      out.time = parseFloat(await page.$eval('#result-table', (e) => e.dataset.time));
      out.rows = await page.$$eval('#result-table tbody tr', (l) => l.map((r) => ({ labels: JSON.parse(r.dataset.labels), value: r.dataset.value })));
    } else if (step === 'json') {
      await open('#/query?' + new URLSearchParams({ q: args[0], tab: 'json' }).toString());
      await wait(() => document.querySelector('#json-out'));
      out.json = JSON.parse(await page.$eval('#json-out', (e) => e.textContent));
    } else if (step === 'error') {
      await open('#/query?' + new URLSearchParams({ q: args[0] }).toString());
      await wait(() => { const e = document.querySelector('#query-error'); return e && !e.hidden && e.textContent; });
      out.text = await page.$eval('#query-error div', (e) => e.textContent);
      out.line = await page.$eval('#query-error', (e) => e.dataset.line || null);
      out.col = await page.$eval('#query-error', (e) => e.dataset.col || null);
      out.caret = await page.$eval('#query-error pre', (e) => e.textContent).catch(() => null);
    } else if (step === 'cluster') {
      // args: node id, then the states that end the wait (comma-separated)
      const [node, states] = args;
      const want = states.split(',');
      const t0 = Date.now();
      await open('#/cluster');
      await wait((n, w) => {
        const r = document.querySelector(`#cl-node-table tr[data-node="${n}"]`);
        return r && w.includes(r.dataset.state);
      }, node, want);
      out.ms = Date.now() - t0;
      out.state = await page.$eval(`#cl-node-table tr[data-node="${node}"]`, (e) => e.dataset.state);
      out.grid_cells = await page.$$eval('#cl-shard-grid td', (l) => l.map((c) => [c.textContent, c.dataset.state]));
      out.meta = await page.$eval('#cl-meta', (e) => e.textContent);
    } else if (step === 'cardinality') {
      await open('#/cardinality');
      await wait(() => document.querySelector('#card-metrics tbody tr'));
      out.top = await page.$$eval('#card-metrics tbody tr', (l) => l.map((r) => r.dataset.name));
      out.pairs = await page.$$eval('#card-pairs tbody tr', (l) => l.length);
      // click-through: the top metric opens on the query page
      await page.click('#card-metrics tbody tr');
      await wait(() => location.hash.startsWith('#/query'));
      out.clicked = decodeURIComponent(await page.evaluate(() => location.hash));
      await open('#/cardinality');
      await wait(() => document.querySelector('#card-metrics tbody tr'));
    } else {
      throw new Error('unknown step ' + step);
    }
    await page.screenshot({ path: path.join(shots, (process.env.CONSOLE_SHOT || step) + '.png') });
    out.external_requests = external;
    out.console_errors = consoleErrors;
    out.failed = failed;
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.message ? e.message : e) }) + '\n');
  process.exit(1);
});
