#!/usr/bin/env node
// Real-browser end-to-end test of the example SPA (examples/spa) against
// `portcullis serve --demo`, which seeds the demo user and the SPA's client and
// serves the SPA on its own origin. Chromium (Debian's /usr/bin/chromium, via
// playwright-core):
//   SPA -> Sign in -> Portcullis login and consent pages -> back to the SPA signed in
//   -> refresh cookie flags, no token in Web Storage -> /userinfo -> reload survives
//   (silent refresh with the HttpOnly cookie) -> Refresh now rotates the cookie
//   -> a replayed (rotated) refresh cookie kills the family: the SPA is signed out and
//   the newest cookie and access token are dead -> sign in again (session and consent
//   remembered) -> RP-initiated logout -> back at the SPA, signed out, and the last
//   access token is refused at /userinfo.
// Fails on any console error (except the 4xx the replay provokes on purpose), page
// error, CSP violation, failed request or 5xx. Screenshot: docs/images/spa.png.
//
// Environment: as tests/e2e/run.mjs (PORTCULLIS_BIN, E2E_DB, E2E_PG_URL,
// CHROMIUM_PATH, E2E_SCREENSHOT_DIR).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { chromium } from 'playwright-core';

import {
  SCREENSHOT_DIR,
  CHROMIUM_PATH,
  CHROMIUM_ARGS,
  DB_KIND,
  PG_ADMIN_URL,
  READY_TIMEOUT_MS,
  ACTION_TIMEOUT_MS,
  check,
  keepLog,
  run,
  freePort,
  psql,
  stop,
  live,
  runE2e,
} from './lib.mjs';

const RETRY_WINDOW_MS = 1_000;

// ------------------------------------------------------------------- main --

async function main() {
  const bin = process.env.PORTCULLIS_BIN;
  if (!bin) throw new Error('PORTCULLIS_BIN is not set (path to the built portcullis binary)');
  if (!existsSync(bin)) throw new Error(`PORTCULLIS_BIN=${bin} does not exist; run cargo build --bin portcullis`);
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`${CHROMIUM_PATH} not found: install Debian's chromium: apt-get install chromium`);
  }
  if (DB_KIND !== 'sqlite' && DB_KIND !== 'postgres') {
    throw new Error(`E2E_DB must be sqlite or postgres, got ${JSON.stringify(DB_KIND)}`);
  }

  const tmp = await mkdtemp(path.join(os.tmpdir(), 'portcullis-e2e-spa-'));
  live.tmp = tmp;
  let pgDb = null;
  let server = null;
  let browser = null;
  let serverExit = null;

  const consoleErrors = [];
  const pageErrors = [];
  const cspViolations = [];
  const failedRequests = [];
  const serverErrors = [];
  let tolerateConsole = null;

  try {
    const port = await freePort();
    const spaPort = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const spa = `http://127.0.0.1:${spaPort}`;

    let dbUrl;
    if (DB_KIND === 'postgres') {
      pgDb = `e2e_${randomBytes(6).toString('hex')}`;
      await psql(`CREATE DATABASE "${pgDb}"`);
      live.pgDb = pgDb;
      const u = new URL(PG_ADMIN_URL);
      u.pathname = `/${pgDb}`;
      dbUrl = u.toString();
    } else {
      dbUrl = `sqlite://${path.join(tmp, 'portcullis.db')}`;
    }
    console.log(`e2e-spa: backend=${DB_KIND} issuer=${base} spa=${spa} workdir=${tmp}`);

    const env = {
      ...process.env,
      PORTCULLIS__ISSUER: base,
      PORTCULLIS__SERVER__BIND: `127.0.0.1:${port}`,
      PORTCULLIS__DATABASE__URL: dbUrl,
      PORTCULLIS__LOG__FORMAT: 'json',
      PORTCULLIS__TOKENS__REFRESH_TOKEN_RETRY_WINDOW: `${RETRY_WINDOW_MS / 1000}s`,
    };

    let printed = '';
    server = spawn(bin, ['serve', '--demo', '--demo-spa-bind', `127.0.0.1:${spaPort}`], {
      cwd: tmp,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.server = server;
    server.stdout.on('data', (d) => {
      printed += d;
      keepLog('', d);
    });
    server.stderr.on('data', (d) => keepLog('', d));
    server.on('exit', (code, signal) => {
      serverExit = { code, signal };
    });
    server.on('error', (err) => {
      serverExit = { code: null, signal: null, error: err.message };
    });

    await check('serve --demo becomes ready and serves the SPA', async () => {
      const deadline = Date.now() + READY_TIMEOUT_MS;
      let last = 'no response';
      for (;;) {
        if (serverExit) throw new Error(`portcullis serve --demo exited early: ${JSON.stringify(serverExit)}`);
        try {
          const ready = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2_000) });
          const app = await fetch(`${spa}/config.json`, { signal: AbortSignal.timeout(2_000) });
          if (ready.status === 200 && app.status === 200 && printed.includes('sign in as')) break;
          last = `readyz ${ready.status}, spa ${app.status}`;
        } catch (err) {
          last = err?.cause?.code || err?.message || String(err);
        }
        if (Date.now() > deadline) throw new Error(`not ready after ${READY_TIMEOUT_MS} ms (last: ${last})`);
        await sleep(200);
      }
      assert.ok(printed.includes(spa), `the demo prints where to click:\n${printed}`);
      assert.ok(printed.includes('demo / portcullis-demo'), `the demo prints the credentials:\n${printed}`);
    });

    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60_000,
    });
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, locale: 'en-US' });
    context.setDefaultTimeout(ACTION_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(ACTION_TIMEOUT_MS);
    const page = await context.newPage();
    page.on('console', (msg) => {
      const text = msg.text();
      const where = msg.location()?.url || page.url();
      if (/Content[- ]Security[- ]Policy/i.test(text)) {
        cspViolations.push(`${where}: ${text}`);
        return;
      }
      if (msg.type() !== 'error') return;
      if (tolerateConsole && tolerateConsole(text, where)) {
        console.log(`  (expected console message: ${text})`);
        return;
      }
      consoleErrors.push(`${where}: ${text}`);
    });
    page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err?.stack || err}`));
    context.on('requestfailed', (req) => {
      const error = req.failure()?.errorText ?? 'failed';
      if (error === 'net::ERR_ABORTED') return;
      failedRequests.push(`${req.method()} ${req.url()}: ${error}`);
    });
    // The SPA keeps its tokens in memory; the test watches the wire to learn them.
    const tokenResponses = [];
    context.on('response', async (res) => {
      if (res.status() >= 500) serverErrors.push(`${res.request().method()} ${res.url()} -> ${res.status()}`);
      if (res.url() === `${base}/token` && res.status() === 200) {
        try {
          tokenResponses.push(await res.json());
        } catch {}
      }
    });
    await mkdir(SCREENSHOT_DIR, { recursive: true });

    // The response listener parses bodies asynchronously: wait for what it records.
    const until = async (cond, what) => {
      const deadline = Date.now() + ACTION_TIMEOUT_MS;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(50);
      }
    };
    const refreshCookie = async () =>
      (await context.cookies(`${base}/token`)).find((c) => c.name === 'portcullis_rt_demo-spa');
    const state = () => page.locator('body').getAttribute('data-state');
    const waitState = (want) =>
      page.waitForFunction((w) => document.body.dataset.state === w, want, { timeout: ACTION_TIMEOUT_MS });
    const userinfoStatus = async (token) =>
      (await fetch(`${base}/userinfo`, { headers: { authorization: `Bearer ${token}` } })).status;
    const refreshWithCookie = async (value) => {
      const res = await fetch(`${base}/token`, {
        method: 'POST',
        headers: { origin: spa, cookie: `portcullis_rt_demo-spa=${value}` },
        body: new URLSearchParams({ grant_type: 'refresh_token', client_id: 'demo-spa' }),
      });
      return { status: res.status, body: await res.json() };
    };

    await check('the SPA starts signed out', async () => {
      await page.goto(spa, { waitUntil: 'load' });
      await waitState('signed-out');
      await page.locator('#signin').waitFor({ state: 'visible' });
    });

    await check('Sign in goes through the Portcullis login and consent pages back to the SPA', async () => {
      await page.locator('#signin').click();
      await page.waitForURL((u) => u.origin === base && u.pathname === '/login', { waitUntil: 'load' });
      assert.ok((await page.locator('body').innerText()).includes('Acme Notes'), 'login names the app');
      await page.locator('#username').fill('demo');
      await page.locator('#password').fill('portcullis-demo');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL((u) => u.origin === base && u.pathname === '/consent', { waitUntil: 'load' });
      await page.getByRole('button', { name: 'Allow' }).click();
      await page.waitForURL((u) => u.origin === spa, { waitUntil: 'load' });
      await waitState('signed-in');
      assert.equal(await page.locator('#who').innerText(), 'Demo User');
      assert.equal(new URL(page.url()).search, '', 'the code is removed from the address bar');
    });

    let cookieValue = '';
    await check('the refresh token is an HttpOnly, SameSite=Strict cookie for /token only', async () => {
      const c = await refreshCookie();
      assert.ok(c, `no refresh cookie; got ${(await context.cookies()).map((x) => x.name).join(', ')}`);
      assert.equal(c.httpOnly, true);
      assert.equal(c.secure, true);
      assert.equal(c.sameSite, 'Strict');
      assert.equal(c.path, '/token');
      cookieValue = c.value;
      await until(() => tokenResponses.length > 0, 'the token response is seen');
      const last = tokenResponses.at(-1);
      assert.ok(last?.access_token, 'a token response was seen');
      assert.equal(last.refresh_token, undefined, 'no refresh token in the JSON');
    });

    await check('no token in Web Storage or document.cookie', async () => {
      const access = tokenResponses.at(-1).access_token;
      const stored = await page.evaluate(() =>
        JSON.stringify({ l: { ...localStorage }, s: { ...sessionStorage }, c: document.cookie }),
      );
      assert.ok(!stored.includes(access), `the access token leaked into storage: ${stored}`);
      assert.ok(!stored.includes(cookieValue), `the refresh token leaked: ${stored}`);
      assert.ok(!stored.includes('eyJ'), `a JWT is in storage: ${stored}`);
    });

    await check('Call /userinfo shows the user', async () => {
      await page.locator('#userinfo').click();
      await page.waitForFunction(() => document.getElementById('output').textContent.includes('demo'));
      const info = JSON.parse(await page.locator('#output').innerText());
      assert.equal(info.preferred_username, 'demo');
      assert.equal(info.email, 'demo@example.com');
    });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'spa.png'), fullPage: true });

    await check('a reload signs in again silently with the refresh cookie (rotated)', async () => {
      const seen = tokenResponses.length;
      await page.reload({ waitUntil: 'load' });
      await waitState('signed-in');
      await until(() => tokenResponses.length >= seen + 1, 'the token response is seen');
      assert.equal(tokenResponses.length, seen + 1, 'one refresh on reload');
      const c = await refreshCookie();
      assert.notEqual(c.value, cookieValue, 'the refresh cookie rotated');
      cookieValue = c.value;
      assert.equal(await page.locator('#who').innerText(), 'Demo User');
    });

    let replayed = '';
    await check('Refresh now rotates the token again and the new access token works', async () => {
      replayed = cookieValue;
      await page.locator('#refresh').click();
      const seen = tokenResponses.length;
      await page.waitForFunction(() => document.getElementById('refreshes').textContent === '2');
      await until(() => tokenResponses.length > seen, 'the token response is seen');
      const c = await refreshCookie();
      assert.notEqual(c.value, replayed);
      cookieValue = c.value;
      assert.equal(await userinfoStatus(tokenResponses.at(-1).access_token), 200);
      // The next silent refresh is scheduled before the access token expires.
      await page.waitForFunction(() => /^in \d+ s$/.test(document.getElementById('next-refresh').textContent));
    });

    await check('a replayed refresh token revokes the family: the SPA is signed out', async () => {
      const lastAccess = tokenResponses.at(-1).access_token;
      // The window is compared in whole seconds: wait past the next second boundary too.
      await sleep(RETRY_WINDOW_MS + 1_500);
      await context.addCookies([
        { name: 'portcullis_rt_demo-spa', value: replayed, domain: '127.0.0.1', path: '/token',
          httpOnly: true, secure: true, sameSite: 'Strict' },
      ]);
      tolerateConsole = (text) => /Failed to load resource: the server responded with a status of 400/.test(text);
      await page.locator('#refresh').click();
      await waitState('signed-out');
      tolerateConsole = null;
      assert.match(await page.locator('#signed-out-message').innerText(), /session has ended/);
      const newest = await refreshWithCookie(cookieValue);
      assert.equal(newest.status, 400);
      assert.equal(newest.body.error, 'invalid_grant');
      assert.equal(await userinfoStatus(lastAccess), 401, "the family's access token is revoked");
    });

    await check('signing in again needs no password or consent (session and consent remembered)', async () => {
      const seen = tokenResponses.length;
      await page.locator('#signin').click();
      await page.waitForURL((u) => u.origin === spa && u.pathname === '/', { waitUntil: 'load' });
      await waitState('signed-in');
      await until(() => tokenResponses.length > seen, 'the token response is seen');
    });

    await check('Sign out is RP-initiated logout: back at the SPA, signed out everywhere', async () => {
      const lastAccess = tokenResponses.at(-1).access_token;
      const c = await refreshCookie();
      await page.locator('#signout').click();
      await page.waitForURL((u) => u.origin === spa && u.pathname === '/', { waitUntil: 'load' });
      await waitState('signed-out');
      assert.match(await page.locator('#signed-out-message').innerText(), /signed out/);
      assert.equal(await refreshCookie(), undefined, 'logout cleared the refresh cookie');
      assert.equal(await userinfoStatus(lastAccess), 401, 'the session-bound access token is dead');
      const after = await refreshWithCookie(c.value);
      assert.equal(after.body.error, 'invalid_grant', 'the refresh family died with the session');
      const account = await page.goto(`${base}/account`, { waitUntil: 'load' });
      assert.ok(account);
      assert.equal(new URL(page.url()).pathname, '/login', 'the provider session is gone');
    });

    await check('no console errors', async () => {
      assert.equal(consoleErrors.length, 0, consoleErrors.join('\n'));
    });
    await check('no uncaught page errors', async () => {
      assert.equal(pageErrors.length, 0, pageErrors.join('\n'));
    });
    await check('no Content-Security-Policy violations', async () => {
      assert.equal(cspViolations.length, 0, cspViolations.join('\n'));
    });
    await check('no failed requests', async () => {
      assert.equal(failedRequests.length, 0, failedRequests.join('\n'));
    });
    await check('no 5xx responses', async () => {
      assert.equal(serverErrors.length, 0, serverErrors.join('\n'));
    });
    await check('server still running', async () => {
      assert.equal(serverExit, null, `portcullis serve exited: ${JSON.stringify(serverExit)}`);
    });
  } finally {
    const cleanup = [];
    if (browser) cleanup.push(browser.close().catch((e) => console.error(`e2e: closing browser: ${e.message}`)));
    cleanup.push(stop(server));
    await Promise.all(cleanup);
    if (pgDb) {
      await psql(`DROP DATABASE IF EXISTS "${pgDb}" WITH (FORCE)`).catch((e) =>
        console.error(`e2e: could not drop database ${pgDb}: ${e.message}`),
      );
    }
    live.pgDb = null;
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    live.tmp = null;
    live.server = null;
  }
}

await runE2e('e2e-spa', main);
