#!/usr/bin/env node
// Real-browser end-to-end test of passkeys (WebAuthn) with Chromium's virtual
// authenticator (CDP WebAuthn domain: CTAP2, internal transport, resident keys, user
// verification):
//   password sign-in -> "Add a passkey" on /account (recovery codes shown: the first
//   factor) -> the passkey listed -> sign out -> "Sign in with a passkey" (no username,
//   no password) lands on /account -> sign out -> password, then "Use your passkey" as
//   the second step -> /account,
// and fails on any console error, page error, CSP violation, failed request or 5xx.
//
// The issuer here is http://localhost:PORT (the server still binds 127.0.0.1): a
// WebAuthn relying party id must be a domain, never an IP address (WebAuthn Level 3
// §5.1.3), and Chromium treats http://localhost as a secure context.
//
// Environment: as run.mjs (PORTCULLIS_BIN, E2E_DB, E2E_PG_URL, CHROMIUM_PATH).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { chromium } from 'playwright-core';

import {
  CHROMIUM_PATH,
  CHROMIUM_ARGS,
  DB_KIND,
  PG_ADMIN_URL,
  READY_TIMEOUT_MS,
  ACTION_TIMEOUT_MS,
  check,
  keepLog,
  run,
  describeRun,
  freePort,
  psql,
  stop,
  pathOf,
  live,
  runE2e,
} from './lib.mjs';

const USERNAME = 'pat';
const DISPLAY_NAME = 'Pat Passkey';
const PASSWORD = 'correct horse battery staple';

async function main() {
  const bin = process.env.PORTCULLIS_BIN;
  if (!bin) throw new Error('PORTCULLIS_BIN is not set (path to the built portcullis binary)');
  if (!existsSync(bin)) throw new Error(`PORTCULLIS_BIN=${bin} does not exist`);
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`${CHROMIUM_PATH} not found`);

  const tmp = await mkdtemp(path.join(os.tmpdir(), 'portcullis-e2e-passkeys-'));
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
  const notes = new Set();

  try {
    const port = await freePort();
    const base = `http://localhost:${port}`;
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
    console.log(`e2e passkeys: backend=${DB_KIND} issuer=${base} workdir=${tmp}`);
    const env = {
      ...process.env,
      PORTCULLIS__ISSUER: base,
      PORTCULLIS__SERVER__BIND: `127.0.0.1:${port}`,
      PORTCULLIS__DATABASE__URL: dbUrl,
      PORTCULLIS__LOG__FORMAT: 'json',
    };

    await check('portcullis migrate exits 0', async () => {
      const r = await run(bin, ['migrate'], { cwd: tmp, env });
      keepLog('[migrate] ', r.stdout + r.stderr);
      assert.equal(r.code, 0, describeRun('portcullis migrate', r));
    });
    await check('portcullis users create exits 0', async () => {
      const r = await run(bin, ['users', 'create', '--username', USERNAME, '--name', DISPLAY_NAME], {
        cwd: tmp,
        env,
        input: `${PASSWORD}\n`,
      });
      keepLog('[users create] ', r.stdout + r.stderr);
      assert.equal(r.code, 0, describeRun('portcullis users create', r));
    });

    server = spawn(bin, ['serve'], { cwd: tmp, env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.server = server;
    server.stdout.on('data', (d) => keepLog('', d));
    server.stderr.on('data', (d) => keepLog('', d));
    server.on('exit', (code, signal) => {
      serverExit = { code, signal };
    });

    await check('GET /readyz returns 200', async () => {
      const deadline = Date.now() + READY_TIMEOUT_MS;
      for (;;) {
        if (serverExit) throw new Error(`portcullis serve exited early: ${JSON.stringify(serverExit)}`);
        try {
          const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2_000) });
          if (res.status === 200) return;
        } catch {}
        if (Date.now() > deadline) throw new Error('/readyz not 200 in time');
        await sleep(200);
      }
    });

    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
    const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 900 }, locale: 'en-US' });
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
      if (msg.type() === 'error') consoleErrors.push(`${where}: ${text}`);
    });
    page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err?.stack || err}`));
    context.on('requestfailed', (req) => {
      const error = req.failure()?.errorText ?? 'failed';
      if (error === 'net::ERR_ABORTED') return;
      failedRequests.push(`${req.method()} ${req.url()}: ${error}`);
    });
    context.on('response', (res) => {
      if (res.status() >= 500) serverErrors.push(`${res.request().method()} ${res.url()} -> ${res.status()}`);
    });

    // Chromium's virtual authenticator: a platform authenticator with resident keys that
    // verifies its user.
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });

    const signInWithPassword = async () => {
      await page.goto('/login', { waitUntil: 'load' });
      await page.locator('#username').fill(USERNAME);
      await page.locator('#password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    };
    const signOut = async () => {
      await page.goto('/account', { waitUntil: 'load' });
      const form = page.locator('form[action="/logout/confirm"]').first();
      await form.getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL((u) => u.pathname === '/login', { waitUntil: 'load' });
    };

    await check('password sign-in lands on /account', async () => {
      await signInWithPassword();
      await page.waitForURL((u) => u.pathname === '/account', { waitUntil: 'load' });
    });

    await check('"Add a passkey" registers a passkey and shows the recovery codes once', async () => {
      const section = page.locator('[data-passkey="register"]');
      await section.waitFor({ state: 'visible' });
      await page.locator('#passkey-name').fill('E2E laptop');
      await page.getByRole('button', { name: 'Add a passkey' }).click();
      await page
        .waitForURL((u) => u.pathname === '/account/passkeys', { waitUntil: 'load' })
        .catch(async (err) => {
          const shown = await page.locator('[data-passkey-error]').innerText().catch(() => '');
          throw new Error(`${err.message}\npage says: ${shown}\nconsole: ${consoleErrors.join('\n')}\n${pageErrors.join('\n')}`);
        });
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('Two-step verification is on'), text);
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      assert.equal(credentials.length, 1, 'one credential on the authenticator');
      assert.equal(credentials[0].isResidentCredential, true, 'a discoverable credential');
    });

    await check('/account lists the passkey with its name', async () => {
      await page.goto('/account', { waitUntil: 'load' });
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('E2E laptop'), text);
    });

    await check('sign out', signOut);

    // The sign-in page asks for a conditional request at once (WebAuthn Level 3
    // §5.1.4, `autocomplete="username webauthn"`); the virtual authenticator answers it as
    // a user picking the passkey from the username field's autofill would.
    await check('conditional mediation (autofill) signs in with the passkey', async () => {
      await page.waitForURL((u) => u.pathname === '/account', { waitUntil: 'load' });
      const text = await page.locator('body').innerText();
      assert.ok(text.includes(DISPLAY_NAME), text);
    });

    // From here on the page sees no conditional mediation (a test-only override injected
    // by the driver, not by the page), so the button is what starts the ceremony.
    await page.addInitScript(() => {
      if (window.PublicKeyCredential) {
        window.PublicKeyCredential.isConditionalMediationAvailable = async () => false;
      }
    });
    await check('sign out again', signOut);

    await check('the sign-in page offers the passkey button and autofill', async () => {
      await page.locator('[data-passkey="login"]').waitFor({ state: 'visible' });
      const autocomplete = await page.locator('#username').getAttribute('autocomplete');
      assert.equal(autocomplete, 'username webauthn');
    });

    await check('"Sign in with a passkey" signs in without username or password', async () => {
      await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
      await page.waitForURL((u) => u.pathname === '/account', { waitUntil: 'load' });
      const text = await page.locator('body').innerText();
      assert.ok(text.includes(DISPLAY_NAME), text);
    });

    await check('sign out once more', signOut);

    await check('after the password, the code page offers the passkey', async () => {
      await signInWithPassword();
      await page.waitForURL((u) => u.pathname === '/login', { waitUntil: 'load' });
      await page.locator('[data-passkey="second-factor"]').waitFor({ state: 'visible' });
    });

    await check('"Use your passkey" completes the sign-in', async () => {
      await page.getByRole('button', { name: 'Use your passkey' }).click();
      await page.waitForURL((u) => u.pathname === '/account', { waitUntil: 'load' });
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('Last used'), text);
    });

    await check('no CSP violations', async () => assert.equal(cspViolations.length, 0, cspViolations.join('\n')));
    await check('no console errors', async () => assert.equal(consoleErrors.length, 0, consoleErrors.join('\n')));
    await check('no page errors', async () => assert.equal(pageErrors.length, 0, pageErrors.join('\n')));
    await check('no failed requests', async () => assert.equal(failedRequests.length, 0, failedRequests.join('\n')));
    await check('no 5xx responses', async () => assert.equal(serverErrors.length, 0, serverErrors.join('\n')));
    await check('server still running', async () => assert.equal(serverExit, null, JSON.stringify(serverExit)));
  } finally {
    for (const n of notes) console.log(`  note: ${n}`);
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

await runE2e('e2e passkeys', main);
