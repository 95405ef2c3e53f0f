// Drives the operator dashboard (/ui/) in Debian's headless Chromium (playwright-core, no
// browser download) and reports what it showed, as JSON on stdout.
//
// Input (JSON on stdin):
//   url          the dashboard, e.g. http://127.0.0.1:8080/ui/
//   token        the admin token (a wrong one, `wrongToken` or "wrong-" + token, is tried first)
//   tenant       the tenant to select
//   search       what to type into the contents search box
//   select       optional: the content id to click (default: the first row)
//   screenshot   optional path: a full-page PNG once everything is shown
//   timeoutMs    how long each step may wait
//   scratch      a fresh directory for the profile, HOME, TMPDIR and XDG_* (Chromium writes
//                outside its profile otherwise)
// Output: { outcome: "ok" | "error", step (the step that failed), error, loginError (the text a
//   wrong token shows), tiles {key_requests, keys_created, licences_granted, licences_denied,
//   errors, sessions}, points {key_requests, keys, licences, errors} (data-points of the
//   charts), contents [{content_id, keys}], contentsAll (every row after the search), selected,
//   keys [{kid, track_type, period, origin, created_at}], latency [{interface, count, p50, p90,
//   p99}], stats (window.keyplexDashboard.lastStats), dashboardErrors, html (the page's markup
//   at the end), consoleErrors, expectedConsoleErrors (the 401 of the wrong token), pageErrors,
//   failedRequests }.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const input = JSON.parse(readFileSync(0, 'utf8'));
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const scratch = input.scratch;
const timeout = input.timeoutMs || 20000;
for (const dir of ['profile', 'home', 'tmp', 'xdg-config', 'xdg-cache', 'xdg-data']) {
  mkdirSync(join(scratch, dir), { recursive: true });
}
const env = {
  ...process.env,
  HOME: join(scratch, 'home'),
  TMPDIR: join(scratch, 'tmp'),
  XDG_CONFIG_HOME: join(scratch, 'xdg-config'),
  XDG_CACHE_HOME: join(scratch, 'xdg-cache'),
  XDG_DATA_HOME: join(scratch, 'xdg-data'),
};

// The same flags as play.mjs.
const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
  // Nothing but loopback: a page that tried to fetch from the internet fails loudly.
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
];

const TILES = {
  key_requests: 'tile-key-requests', keys_created: 'tile-keys-created',
  licences_granted: 'tile-licences-granted', licences_denied: 'tile-licences-denied',
  errors: 'tile-errors', sessions: 'tile-sessions',
};
const CHARTS = {
  key_requests: 'chart-key-requests', keys: 'chart-keys', licences: 'chart-licences', errors: 'chart-errors',
};

const result = {
  outcome: 'error', step: 'launch', error: null, loginError: null, tiles: {}, points: {},
  contents: [], contentsAll: [], selected: null, keys: [], latency: [], stats: null, dashboardErrors: [],
  html: null, consoleErrors: [], expectedConsoleErrors: [], pageErrors: [], failedRequests: [],
};
let phase = 'start';
let context;

async function readPage(page) {
  return page.evaluate(({ tiles, charts }) => {
    const text = (id) => { const e = document.getElementById(id); return e ? e.textContent.trim() : null; };
    const out = { tiles: {}, points: {} };
    for (const [k, id] of Object.entries(tiles)) out.tiles[k] = text(id);
    for (const [k, id] of Object.entries(charts)) {
      const svg = document.querySelector(`#${id} svg`);
      out.points[k] = svg ? Number(svg.getAttribute('data-points')) : null;
    }
    out.latency = [...document.querySelectorAll('#latency tbody tr[data-interface]')].map((tr) => {
      const c = [...tr.cells].map((td) => td.textContent.trim());
      return { interface: tr.dataset.interface, count: Number(c[1]), p50: c[2], p90: c[3], p99: c[4] };
    });
    const d = window.keyplexDashboard || {};
    out.stats = d.lastStats || null;
    out.dashboardErrors = d.errors || [];
    out.polls = d.polls || 0;
    return out;
  }, { tiles: TILES, charts: CHARTS });
}

const contentRows = (page) => page.evaluate(() =>
  [...document.querySelectorAll('#contents tbody tr[data-content-id]')].map((tr) => ({
    content_id: tr.dataset.contentId, keys: Number(tr.cells[1].textContent),
  })));

try {
  context = await chromium.launchPersistentContext(join(scratch, 'profile'), {
    executablePath: chromiumPath,
    headless: true,
    args,
    env,
    viewport: { width: 1280, height: 900 },
    timeout: 30000,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(timeout);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // The browser logs the refused sign-in itself ("Failed to load resource: … 401").
    if (phase === 'wrong-token' && /status of 401/.test(text)) result.expectedConsoleErrors.push(text);
    else result.consoleErrors.push(`${phase}: ${text}`);
  });
  page.on('pageerror', (e) => result.pageErrors.push(String(e)));
  page.on('requestfailed', (r) => {
    // A poll cancelled by a change of tenant or window is not a failure.
    if (r.failure()?.errorText === 'net::ERR_ABORTED') return;
    result.failedRequests.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`);
  });

  result.step = 'open';
  phase = 'open';
  await page.goto(input.url, { waitUntil: 'load', timeout: 15000 });
  await page.locator('#login').waitFor({ state: 'visible' });

  result.step = 'wrong-token';
  phase = 'wrong-token';
  await page.fill('#token', input.wrongToken || `wrong-${input.token}`);
  await page.click('#login-submit');
  await page.locator('#login-error').waitFor({ state: 'visible' });
  result.loginError = (await page.textContent('#login-error')).trim();
  result.dashboardVisibleAfterWrongToken = await page.isVisible('#dashboard');

  result.step = 'login';
  phase = 'login';
  await page.fill('#token', input.token);
  await page.click('#login-submit');
  await page.locator('#dashboard').waitFor({ state: 'visible' });
  result.tenantOptions = await page.$$eval('#tenant option', (os) => os.map((o) => o.value));

  result.step = 'select-tenant';
  phase = 'dashboard';
  await page.selectOption('#tenant', input.tenant);
  await page.waitForFunction((tenant) => {
    const d = window.keyplexDashboard;
    const points = (id) => Number(document.querySelector(`#${id} svg`)?.getAttribute('data-points') || 0);
    return d && d.lastStats && d.lastStats.tenant === tenant &&
      points('chart-key-requests') > 0 && points('chart-licences') > 0;
  }, input.tenant, { timeout, polling: 200 });

  result.step = 'search';
  await page.locator('#content-search').waitFor({ state: 'visible' });
  await page.waitForFunction(() => !document.getElementById('content-search').disabled);
  await page.click('#content-search');
  await page.keyboard.type(input.search, { delay: 40 });
  await page.waitForFunction((search) => {
    const table = document.getElementById('contents');
    return table.dataset.loaded === 'true' && table.dataset.search === search &&
      table.querySelectorAll('tbody tr[data-content-id]').length > 0;
  }, input.search, { timeout, polling: 100 });
  result.contentsAll = await contentRows(page);
  result.contents = result.contentsAll.map((c) => c.content_id);

  result.step = 'keys';
  const target = input.select || result.contents[0];
  result.selected = target;
  // By index, not by a selector: a content id can hold any character.
  const index = await page.$$eval('#contents tbody tr[data-content-id]',
    (rows, id) => rows.findIndex((tr) => tr.dataset.contentId === id), target);
  if (index < 0) throw new Error(`no row for ${target}`);
  await page.locator('#contents tbody tr[data-content-id]').nth(index).click();
  await page.waitForFunction((id) => {
    const table = document.getElementById('keys');
    return table.dataset.contentId === id && table.dataset.loaded === 'true';
  }, target, { timeout, polling: 100 });
  result.keysHeading = (await page.textContent('#keys-content')).trim();
  result.keys = await page.$$eval('#keys tbody tr[data-kid]', (rows) => rows.map((tr) => {
    const c = [...tr.cells].map((td) => td.textContent.trim());
    return { kid: c[0], track_type: c[1], period: c[2], origin: c[3], created_at: c[4] };
  }));

  // One more poll after all that, so the tiles are the newest numbers.
  result.step = 'final-poll';
  const polls = await page.evaluate(() => window.keyplexDashboard.polls);
  await page.waitForFunction((n) => window.keyplexDashboard.polls > n, polls, { timeout, polling: 100 });
  Object.assign(result, await readPage(page));

  result.step = 'screenshot';
  if (input.screenshot) {
    await page.evaluate(() => window.scrollTo(0, 0));
    // Hover the newest bar of the key requests chart: the screenshot shows a tooltip too.
    const bars = page.locator('#chart-key-requests svg .bars rect');
    const count = await bars.count();
    if (count) {
      const box = await bars.nth(count - 1).boundingBox();
      if (box) await page.mouse.move(box.x + box.width / 2, box.y + Math.min(4, box.height / 2));
      await page.waitForTimeout(150);
    }
    await page.screenshot({ path: input.screenshot, fullPage: true });
  }
  result.html = await page.content();
  result.step = 'done';
  result.outcome = 'ok';
} catch (e) {
  result.error = `${e && e.stack ? e.stack : e}`;
} finally {
  if (context) await context.close().catch(() => {});
}
process.stdout.write(JSON.stringify(result));
