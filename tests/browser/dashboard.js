// The dashboard in a real headless Chromium (Debian's, driven by
// playwright-core from web/node_modules): loads it, sees a queue appear
// within 3 s of an enqueue, logs in, pauses the queue with its button and
// sees it paused, checks that it fits a phone's width, and saves a
// screenshot. Run by tests/integration/test_web_browser.py, which starts
// redis-server, corrald and corral-web and passes in the environment:
//   CORRAL_WEB_URL, CORRAL_WEB_TOKEN, CORRALCTL, CORRAL_CONF, QUEUE,
//   SCREENSHOT, USER_DATA_DIR, CHROMIUM
// Prints one JSON line of figures; exits 1 with the reason on failure.
'use strict';
const path = require('path');
const { execFile } = require('child_process');

const repo = path.resolve(__dirname, '..', '..');
const { chromium } = require(path.join(repo, 'web', 'node_modules', 'playwright-core'));

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

function enqueue(queue) {
  return new Promise((resolve, reject) => {
    execFile(env('CORRALCTL'), ['-c', env('CORRAL_CONF'), 'enqueue', queue, '{"from":"browser test"}'],
      (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout.trim())));
  });
}

async function main() {
  const url = env('CORRAL_WEB_URL');
  const queue = env('QUEUE');
  const out = {};
  const context = await chromium.launchPersistentContext(env('USER_DATA_DIR'), {
    executablePath: env('CHROMIUM'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  const problems = [];
  try {
    const page = context.pages()[0] || await context.newPage();
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      // A CSP violation or a failed load is a bug of the page.
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    await page.goto(url);
    // The dashboard shows what corrald declared, and no card yet for queue.
    await page.waitForSelector('[data-queue="jobs"]', { timeout: 10000 });
    if (await page.$(`[data-queue="${queue}"]`)) throw new Error(`${queue} shown before its enqueue`);

    // From the moment the enqueue has returned its id (corralctl's own
    // start-up is not the dashboard's time).
    const id = await enqueue(queue);
    const t0 = Date.now();
    await page.waitForSelector(`[data-queue="${queue}"]`, { timeout: 3000 });
    out.queue_appeared_ms = Date.now() - t0;
    out.job = id;
    await page.waitForFunction((q) => {
      const b = document.querySelector(`[data-queue="${q}"] b[data-k="depth"]`);
      return b && b.textContent === '1';
    }, queue, { timeout: 3000 });

    // Log in: the pause button appears only for the operator.
    const pause = `[data-queue="${queue}"] button[data-action="pause"]`;
    if (await page.isVisible(pause)) throw new Error('the pause button shows before logging in');
    await page.fill('#token', env('CORRAL_WEB_TOKEN'));
    await page.click('#login-button');
    await page.waitForSelector('#who', { state: 'visible', timeout: 5000 });
    if (await page.inputValue('#token') !== '') throw new Error('the token stays in the form');

    const t1 = Date.now();
    await page.click(pause);
    await page.waitForSelector(`[data-queue="${queue}"][data-paused="yes"] .badge.paused`,
      { state: 'visible', timeout: 5000 });
    out.paused_shown_ms = Date.now() - t1;
    await page.waitForSelector(`[data-queue="${queue}"] button[data-action="resume"]`,
      { state: 'visible', timeout: 3000 });

    // Let the charts draw, then the screenshot.
    await page.waitForSelector('[data-queue="jobs"] .uplot', { timeout: 15000 });
    await page.waitForSelector('[data-host] .uplot', { timeout: 15000 });
    // The scaler's decisions beside the pool chart (corrald keeps them in Redis).
    await page.waitForSelector('[data-host] .decisions li', { timeout: 15000 });
    out.decisions_shown = await page.$$eval('[data-host] .decisions li', (l) => l.length);
    await page.waitForTimeout(500);
    await page.screenshot({ path: env('SCREENSHOT'), fullPage: true });

    // A phone: one column, nothing wider than the screen.
    const phone = await context.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(url);
    await phone.waitForSelector(`[data-queue="${queue}"] .uplot`, { timeout: 15000 });
    const widths = await phone.evaluate(() => ({
      page: document.documentElement.scrollWidth, screen: window.innerWidth }));
    out.phone_width = widths;
    if (widths.page > widths.screen + 1) {
      throw new Error(`on a phone the page is ${widths.page}px wide for a ${widths.screen}px screen`);
    }
    if (problems.length) throw new Error(problems.join('; '));
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    await context.close();
  }
}

main().catch((e) => {
  process.stderr.write(`browser test failed: ${e.message}\n`);
  process.exit(1);
});
