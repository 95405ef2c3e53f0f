// Opens one reference player page in Debian's headless Chromium (playwright-core, no browser
// download) and reports what happened, as JSON on stdout.
//
// Input (JSON on stdin):
//   url           the player page, with its fields in the fragment (…#manifest=…&autoplay=1)
//   watch         substrings of the URLs whose requests and answers are recorded (licence, keys)
//   targetTime    seconds of playback that count as "playing"
//   minFrames     video frames that must have been decoded by then
//   timeoutMs     how long to wait for playback or a licence error
//   screenshot    optional path: a PNG of the page once playback passed targetTime
//   scratch       a fresh directory for the profile, HOME, TMPDIR and XDG_* (Chromium writes
//                 outside its profile otherwise)
// Output: { outcome: "played" | "licence-error" | "error" | "timeout", report (the page's
//   window.keyplexReport), licenceRequests: [{url, method, status, requestBody, responseBody}],
//   console, pageErrors }.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const input = JSON.parse(readFileSync(0, 'utf8'));
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const scratch = input.scratch;
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

const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
  // Nothing but loopback: a page that tried to fetch from the internet fails loudly.
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
];

// What the video shows, from a screenshot of it (drawing EME video onto a canvas gives
// black in Chromium, a screenshot does not): the share of pixels that are not near black
// and the number of distinct colours (coarsely quantized).
async function videoPixels(context, png) {
  const scratchPage = await context.newPage();
  try {
    return await scratchPage.evaluate(async (dataUrl) => {
      const img = new Image();
      img.src = dataUrl;
      await img.decode();
      const canvas = document.createElement('canvas');
      canvas.width = img.width;
      canvas.height = img.height;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const data = ctx.getImageData(0, 0, img.width, img.height).data;
      let bright = 0;
      const colours = new Set();
      for (let i = 0; i < data.length; i += 4) {
        if (data[i] + data[i + 1] + data[i + 2] > 90) bright++;
        colours.add(((data[i] >> 5) << 6) | ((data[i + 1] >> 5) << 3) | (data[i + 2] >> 5));
      }
      return { width: img.width, height: img.height, brightFraction: bright / (data.length / 4), colours: colours.size };
    }, 'data:image/png;base64,' + png.toString('base64'));
  } finally {
    await scratchPage.close();
  }
}

const result = { outcome: 'timeout', report: null, licenceRequests: [], console: [], pageErrors: [] };
let context;
try {
  context = await chromium.launchPersistentContext(join(scratch, 'profile'), {
    executablePath: chromiumPath,
    headless: true,
    args,
    env,
    viewport: { width: 1100, height: 1180 },
    timeout: 30000,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => result.pageErrors.push(String(e)));
  const pending = [];
  page.on('requestfinished', (request) => {
    if (!input.watch.some((w) => request.url().includes(w))) return;
    pending.push((async () => {
      const response = await request.response();
      const body = response ? await response.body().catch(() => Buffer.alloc(0)) : Buffer.alloc(0);
      const posted = request.postDataBuffer();
      result.licenceRequests.push({
        url: request.url(),
        method: request.method(),
        status: response ? response.status() : 0,
        authorization: (await request.allHeaders()).authorization || null,
        requestBody: posted ? posted.toString('base64') : null,
        responseBody: body.toString('base64'),
      });
    })());
  });
  page.on('requestfailed', (request) => {
    if (!input.watch.some((w) => request.url().includes(w))) return;
    result.licenceRequests.push({ url: request.url(), method: request.method(), status: 0, failure: request.failure()?.errorText });
  });

  await page.goto(input.url, { waitUntil: 'load', timeout: 15000 });
  const deadline = Date.now() + input.timeoutMs;
  const state = () => page.evaluate(() => window.keyplexReport && JSON.parse(JSON.stringify(window.keyplexReport)));
  for (;;) {
    const report = await state();
    result.report = report;
    // Both: a player can move the playhead over a stall without decoding anything.
    if (report && report.currentTime >= input.targetTime && report.decodedFrames >= input.minFrames) {
      result.outcome = 'played';
      break;
    }
    if (report && report.errors.length) {
      // Let the player settle, then take the final state: a player that recovered and
      // played would show it here.
      await page.waitForTimeout(1500);
      result.report = await state();
      const errors = result.report.errors;
      if (result.report.currentTime >= input.targetTime && result.report.decodedFrames >= input.minFrames) {
        result.outcome = 'played';
      }
      else result.outcome = errors.some((e) => e.licence) ? 'licence-error' : 'error';
      break;
    }
    if (Date.now() > deadline) break;
    await page.waitForTimeout(200);
  }
  if (result.outcome === 'played') {
    if (input.screenshot) await page.screenshot({ path: input.screenshot, fullPage: false });
    result.videoPixels = await videoPixels(context, await page.locator('#video').screenshot());
  }
  await Promise.all(pending);
} catch (e) {
  result.outcome = 'error';
  result.pageErrors.push(`harness: ${e && e.stack ? e.stack : e}`);
} finally {
  if (context) await context.close().catch(() => {});
}
process.stdout.write(JSON.stringify(result));
