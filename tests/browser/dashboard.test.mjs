// The dashboard of `gantry serve` in a real headless browser (Debian's Chromium, driven by
// playwright-core) against the real server binary with simulated GPUs on loopback and a temporary
// database: the page loads with no console errors, GPUs and the queue are shown, a workload
// submitted through the form runs and its log appears, a bad spec shows the field's error, cancel
// works, a viewer sees no mutation controls, and with --no-auth no token is asked for.
//
// Screenshots go to $SCREENSHOT_DIR (default target/browser-screenshots/).
//
//   node tests/browser/dashboard.test.mjs          (after `cargo build -p gantry`)

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.GANTRY_BIN || path.join(ROOT, 'target/debug/gantry');
const OUT = process.env.SCREENSHOT_DIR || path.join(ROOT, 'target/browser-screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const GPUS = '4xH100-80GB';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A real `gantry serve` in a fresh temporary directory. */
class Server {
  static async start({ auth }) {
    const s = new Server();
    s.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-browser-'));
    // Workloads run as nobody when the tests run as root: they must reach the directory.
    fs.chmodSync(s.dir, 0o755);
    s.db = path.join(s.dir, 'g.db');
    s.port = await freePort();
    s.url = `http://127.0.0.1:${s.port}`;
    s.tokens = {};
    if (auth) {
      for (const [name, role] of [['root', 'admin'], ['eve', 'viewer']]) {
        s.tokens[name] = execFileSync(BIN, ['token', 'create', '--name', name, '--role', role, '--db', s.db],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
      }
    }
    const args = ['serve', '--listen', `127.0.0.1:${s.port}`, '--db', s.db, '--log-dir', path.join(s.dir, 'logs'),
      '--simulate-gpus', GPUS, '--grace', '1'];
    if (!auth) args.push('--no-auth');
    s.logFile = path.join(s.dir, 'server.log');
    const log = fs.openSync(s.logFile, 'w');
    s.child = spawn(BIN, args, { stdio: ['ignore', log, log], env: { ...process.env, GANTRY_LOG: 'warn' } });
    s.exited = new Promise((resolve) => s.child.on('exit', (code, signal) => resolve({ code, signal })));
    const end = Date.now() + 20000;
    for (;;) {
      try {
        if ((await fetch(s.url + '/readyz')).status === 200) return s;
      } catch (_) { /* not listening yet */ }
      if (s.child.exitCode !== null || Date.now() > end) {
        throw new Error('gantry serve did not become ready:\n' + fs.readFileSync(s.logFile, 'utf8'));
      }
      await sleep(50);
    }
  }

  async api(method, p, { token, body } = {}) {
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const r = await fetch(this.url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch (_) { /* text */ }
    return { status: r.status, json, text };
  }

  async submit(spec, token) {
    const r = await this.api('POST', '/api/workloads', { token, body: spec });
    assert.equal(r.status, 201, r.text);
    return r.json.id;
  }

  async workload(id, token) {
    const r = await this.api('GET', `/api/workloads/${id}/status`, { token });
    assert.equal(r.status, 200, r.text);
    return r.json.workload;
  }

  async waitState(id, states, token, ms = 20000) {
    const end = Date.now() + ms;
    for (;;) {
      const w = await this.workload(id, token);
      if (states.includes(w.state)) return w;
      assert.ok(Date.now() < end, `${id} not in ${states} after ${ms} ms: ${JSON.stringify(w)}`);
      await sleep(100);
    }
  }

  /** Cancels every unfinished workload, so that no child outlives the test. */
  async cancelAll(token) {
    const r = await this.api('GET', '/api/workloads?limit=1000', { token });
    for (const w of (r.json && r.json.items) || []) {
      if (!['succeeded', 'failed', 'cancelled'].includes(w.state)) {
        await this.api('POST', `/api/workloads/${w.id}/cancel`, { token });
      }
    }
  }

  /** SIGTERM; resolves to how long the process took to exit. */
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return 0;
    const t = Date.now();
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(timer);
    return Date.now() - t;
  }
}

/** Console errors, warnings of the page's own code and uncaught exceptions, with the step they came in. */
const problems = [];
let step = 'start';

function watch(page, who) {
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push({ who, step, text: m.text(), url: m.location().url || '' });
  });
  page.on('pageerror', (e) => problems.push({ who, step, text: 'uncaught: ' + e.message, url: '' }));
}

async function shot(page, name) {
  fs.mkdirSync(OUT, { recursive: true });
  // From the top, so that the sticky header is where a person sees it.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(OUT, name), fullPage: true });
  console.log(`  screenshot ${path.relative(ROOT, path.join(OUT, name))}`);
}

async function signIn(page, url, token) {
  await page.goto(url + '/');
  await page.locator('#login').waitFor({ state: 'visible' });
  await page.fill('#token', token);
  await page.click('#login-submit');
  await page.waitForFunction(() => document.querySelectorAll('#gpu-list .gpu').length === 4, null, { timeout: 10000 });
}

const text = (page, sel) => page.locator(sel).innerText();

async function main() {
  assert.ok(fs.existsSync(BIN), `${BIN} is missing: run cargo build -p gantry`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
  const server = await Server.start({ auth: true });
  const root = server.tokens.root;
  // Routes of other parts of the API the page uses when present; a 404 for them is expected only while
  // the server has no such route.
  const absent = [];
  for (const [probe, fragment] of [['/api/costs/findings?window=7d', '/api/costs/findings'], ['/api/workloads/wl-1/explain', '/explain']]) {
    const r = await server.api('GET', probe, { token: root });
    if (r.status === 404 && r.json && r.json.error && r.json.error.message === 'no such route') absent.push(fragment);
  }
  let failed = null;
  let page = null;
  try {
    // Work the page will find: three GPUs held for minutes, and a two-GPU workload that must wait.
    step = 'seed';
    const holder = await server.submit({ name: 'hold-three', resources: { gpu: { count: 3 } }, run: { command: ['sleep', '300'] } }, root);
    await server.waitState(holder, ['running'], root);
    const waiter = await server.submit({ name: 'waits-for-two', resources: { gpu: { count: 2 } }, run: { command: ['true'] } }, root);

    // --- An admin signs in: GPUs with telemetry and holders, the queue with positions. ---
    step = 'load';
    console.log('admin: page loads, GPUs and queue shown');
    const admin = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    page = await admin.newPage();
    watch(page, 'admin');
    await signIn(page, server.url, root);
    assert.equal(await text(page, '#who'), 'root · admin');
    await page.waitForFunction(() => document.querySelector('#conn').textContent === 'live');
    assert.equal(await page.locator(`#gpu-list .holder[data-workload="${holder}"]`).count(), 3, 'the holder on three GPUs');
    for (const util of await page.locator('#gpu-list .gpu .util-pct').allInnerTexts()) assert.match(util, /^\d+%$/);
    for (const temp of await page.locator('#gpu-list .gpu .temp').allInnerTexts()) assert.match(temp, /^\d+ °C$/);
    const row = page.locator(`#queue-table tr[data-id="${waiter}"]`);
    await row.waitFor();
    assert.equal(await row.locator('.pos').innerText(), '#1 / 1');
    assert.match(await row.locator('.why').innerText(), /waiting/);
    assert.match(await text(page, '#summary'), /GPUs 4/);
    // Why it waits: the explanation of the API, in the detail panel.
    await row.locator('button.why-btn').click();
    await page.waitForFunction(() => !['', 'Loading…'].includes(document.querySelector('#explain').textContent));
    const explained = await server.api('GET', `/api/workloads/${waiter}/explain`, { token: root });
    const shown = await text(page, '#explain');
    if (explained.status === 200) {
      assert.equal(shown.split('\n')[0], explained.json.summary.split('\n')[0]);
    } else {
      assert.equal(shown, 'This server does not explain placements yet.');
    }
    assert.equal(await text(page, '#log-state'), 'not started yet');
    // Charts fill from the stream.
    await page.waitForFunction(() => document.querySelectorAll('#chart-util polyline, #chart-queue polyline').length === 2, null, { timeout: 10000 });
    await page.waitForFunction(() => !document.querySelector('#cost-table tbody').textContent.includes('Loading'));
    // The queues table: the default queue (not declared, so unlimited) holds three GPUs, one waits.
    const queueRow = page.locator('#queues-table tr[data-queue="default"]');
    await queueRow.waitFor();
    assert.equal(await queueRow.locator('.used').innerText(), '3.00');
    assert.match(await queueRow.locator('.guaranteed').innerText(), /unlimited/);
    await shot(page, '01-overview.png');

    // --- Submit through the form: it runs and its log appears. ---
    step = 'submit';
    console.log('admin: submit through the form, the log appears');
    await page.fill('#f-name', 'browser-hello');
    await page.fill('#f-command', 'echo hello-from-the-browser; sleep 1; echo done');
    await page.fill('#f-gpus', '1');
    await page.click('#submit-form-btn');
    await page.waitForFunction(() => /Submitted wl-\d+/.test(document.querySelector('#submit-result').textContent));
    const submitted = (await text(page, '#submit-result')).match(/wl-\d+/)[0];
    await page.waitForFunction(() => document.querySelector('#log').textContent.includes('hello-from-the-browser'), null, { timeout: 20000 });
    const done = await server.waitState(submitted, ['succeeded', 'failed'], root);
    assert.equal(done.state, 'succeeded', JSON.stringify(done));
    assert.equal(done.name, 'browser-hello');
    await page.waitForFunction(() => document.querySelector('#log').textContent.includes('done'), null, { timeout: 10000 });
    await page.locator(`#finished-table tr[data-id="${submitted}"] .state.succeeded`).waitFor({ timeout: 10000 });
    await shot(page, '02-submitted-log.png');

    // --- A bad spec shows the error at the field the API names, and submits nothing. ---
    step = 'bad-spec';
    console.log('admin: a bad spec shows the field error');
    const before = (await server.api('GET', '/api/workloads?limit=1000', { token: root })).json.items.length;
    await page.fill('#f-name', 'too-big');
    await page.fill('#f-gpus', '64');
    await page.click('#submit-form-btn');
    const gpuError = page.locator('.field-error[data-for="resources.gpu.count"]');
    await page.waitForFunction(() => document.querySelector('.field-error[data-for="resources.gpu.count"]').textContent.length > 0);
    assert.ok(await gpuError.isVisible());
    assert.match(await page.getAttribute('#f-gpus', 'class'), /invalid/);
    assert.equal(await page.getAttribute('#f-gpus', 'aria-invalid'), 'true');
    await shot(page, '03-field-error.png');
    // The YAML tab: a count that is not a number, named by path.
    await page.click('#tab-yaml');
    await page.fill('#spec-yaml', 'name: bad-yaml\nresources:\n  gpu:\n    count: two\nrun:\n  command: [true]\n');
    await page.click('#submit-yaml-btn');
    await page.waitForFunction(() => document.querySelector('#submit-yaml .field-error[data-for="*"]').textContent.length > 0);
    assert.match(await text(page, '#submit-yaml .field-error[data-for="*"]'), /^resources\.gpu\.count: /);
    await shot(page, '03b-yaml-error.png');
    await page.click('#tab-form');
    const after = (await server.api('GET', '/api/workloads?limit=1000', { token: root })).json.items.length;
    assert.equal(after, before, 'a refused spec submits nothing');

    // --- Cancel: the waiting workload from the queue, the running one from the running table. ---
    step = 'cancel';
    console.log('admin: cancel from the queue and from the running table');
    await row.locator('button.cancel').click();
    await row.waitFor({ state: 'detached', timeout: 10000 });
    assert.equal((await server.workload(waiter, root)).state, 'cancelled');
    await page.locator(`#running-table tr[data-id="${holder}"] button.cancel`).click();
    assert.equal((await server.waitState(holder, ['cancelled', 'failed', 'succeeded'], root, 10000)).state, 'cancelled');
    await page.locator(`#finished-table tr[data-id="${holder}"] .state.cancelled`).waitFor({ timeout: 10000 });
    await shot(page, '04-cancelled.png');

    // --- Strategy switch (operators and admins). ---
    step = 'strategy';
    console.log('admin: switch the strategy');
    const options = await page.locator('#strategy-select option').allTextContents();
    const current = (await server.api('GET', '/api/scheduler/strategy', { token: root })).json.strategy;
    const other = options.find((o) => o !== current);
    await page.selectOption('#strategy-select', other);
    await page.click('#strategy-apply');
    await page.waitForFunction((o) => document.querySelector('#strategy-result').textContent === `Switched to ${o}.`, other);
    assert.equal((await server.api('GET', '/api/scheduler/strategy', { token: root })).json.strategy, other);
    await page.waitForFunction((o) => document.querySelector('#strategy-current').textContent === o, other);

    // --- A viewer: everything shown, no control that changes anything. ---
    step = 'viewer';
    console.log('viewer: no submit, cancel or strategy controls');
    const busy = await server.submit({ name: 'viewer-sees-me', resources: { gpu: { count: 1 } }, run: { command: ['sleep', '60'] } }, root);
    const waits = await server.submit({ name: 'viewer-sees-me-wait', resources: { gpu: { count: 4 } }, run: { command: ['true'] } }, root);
    await server.waitState(busy, ['running'], root);
    const viewerContext = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const vpage = await viewerContext.newPage();
    watch(vpage, 'viewer');
    await signIn(vpage, server.url, server.tokens.eve);
    assert.equal(await text(vpage, '#who'), 'eve · viewer');
    await vpage.locator(`#running-table tr[data-id="${busy}"]`).waitFor();
    await vpage.locator(`#queue-table tr[data-id="${waits}"]`).waitFor();
    for (const sel of ['#submit', '#submit-form', '#submit-yaml', 'button.cancel', '#strategy-form', '#strategy-select', '[data-action=cancel]']) {
      assert.equal(await vpage.locator(sel).count(), 0, `a viewer sees ${sel}`);
    }
    assert.ok(await vpage.locator('#strategy-current').isVisible());
    // ...and the API refuses a viewer's mutations anyway.
    const refused = await server.api('POST', '/api/workloads', { token: server.tokens.eve, body: { name: 'x', run: { command: ['true'] } } });
    assert.equal(refused.status, 403);
    await shot(vpage, '05-viewer.png');
    // The admin's page still shows cancel controls for the same work.
    await page.locator(`#running-table tr[data-id="${busy}"] button.cancel`).waitFor();
    await viewerContext.close();
    await admin.close();
    page = null;

    // --- No console errors but those the steps cause on purpose. ---
    step = 'console';
    const unexpected = problems.filter((p) => {
      const refusedSpec = p.step === 'bad-spec' && /status of 400/.test(p.text) && p.url.endsWith('/api/workloads');
      const missingRoute = /status of 404/.test(p.text) && absent.some((a) => p.url.includes(a));
      return !(refusedSpec || missingRoute);
    });
    assert.deepEqual(unexpected, [], 'console errors');
    assert.ok(problems.some((p) => p.step === 'bad-spec'), 'the refused spec was seen as a 400 (the console is watched)');
    if (absent.length) console.log(`  (not yet on this server, 404 tolerated: ${absent.join(', ')})`);
  } catch (e) {
    failed = e;
    if (page) await shot(page, 'failure.png').catch(() => {});
  } finally {
    await server.cancelAll(root).catch(() => {});
  }
  const stopped = await server.stop();

  // --- Without auth: no sign-in, the local admin; SIGTERM ends the server with a page connected. ---
  let failedOpen = null;
  if (!failed) {
    step = 'no-auth';
    console.log('no auth: no token asked for; the server stops promptly with the stream open');
    const open = await Server.start({ auth: false });
    try {
      const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
      const p = await ctx.newPage();
      watch(p, 'no-auth');
      await p.goto(open.url + '/');
      await p.waitForFunction(() => document.querySelectorAll('#gpu-list .gpu').length === 4, null, { timeout: 10000 });
      assert.equal(await p.locator('#login').isVisible(), false);
      assert.equal(await text(p, '#who'), 'local · admin (no auth)');
      assert.equal(await p.locator('#signout').isVisible(), false);
      assert.ok(await p.locator('#submit-form').isVisible());
      await p.waitForFunction(() => document.querySelector('#conn').textContent === 'live');
      await shot(p, '06-no-auth.png');
      const took = await open.stop();
      assert.ok(took < 5000, `SIGTERM with a stream open took ${took} ms`);
      await p.waitForFunction(() => document.querySelector('#conn').textContent !== 'live', null, { timeout: 15000 });
      await ctx.close();
      const late = problems.filter((x) => x.who === 'no-auth' && !/ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|net::/.test(x.text));
      assert.deepEqual(late, [], 'console errors without auth');
    } catch (e) {
      failedOpen = e;
    } finally {
      await open.stop();
    }
  }
  await browser.close();
  const err = failed || failedOpen;
  if (err) {
    console.error(`FAILED in step ${step}:`, err);
    console.error('server log:\n' + fs.readFileSync(server.logFile, 'utf8').slice(-4000));
    process.exit(1);
  }
  console.log(`ok: dashboard browser tests passed (auth server stopped in ${stopped} ms)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
