#!/usr/bin/env node
// Real-browser end-to-end test for Portcullis.
//
// Drives Debian's chromium (/usr/bin/chromium) with playwright-core against a
// freshly migrated `portcullis serve` on a free loopback port:
//   login page -> wrong password (error shown) -> right password -> /account
//   -> session cookie flags -> sign out -> /account redirects to /login
//   -> the authorization code flow with a relying party on another origin
//   -> RP-initiated logout, through the confirmation page and with an id_token_hint,
//      back to the relying party
//   -> two-step verification on /account: an authenticator app set up from the key on
//      the page (its code computed here, RFC 6238), the recovery codes shown once, and
//      the app removed again,
// and fails on any console error, page error, CSP violation, failed request
// or 5xx response seen along the way. Screenshots go to docs/images/.
//
// Environment:
//   PORTCULLIS_BIN      path to the built `portcullis` binary (required)
//   E2E_DB              sqlite (default) | postgres
//   E2E_PG_URL          admin URL used to create/drop the throwaway database
//                       (default: $TEST_DATABASE_URL, else
//                       postgres://postgres@127.0.0.1:5432/postgres)
//   CHROMIUM_PATH       browser executable (default /usr/bin/chromium)
//   E2E_SCREENSHOT_DIR  where screenshots go (default <repo>/docs/images)
//
// Prints `e2e: N passed, 0 failed` and exits 0 on success; on failure prints
// what failed plus the server's last 50 log lines and exits 1.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
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
  describeRun,
  freePort,
  psql,
  stop,
  pathOf,
  live,
  runE2e,
} from './lib.mjs';

const USERNAME = 'alice';
const DISPLAY_NAME = 'Alice Example';
const EMAIL = 'alice@example.com';
const PASSWORD = 'correct horse battery staple';
const WRONG_PASSWORD = 'Tr0ub4dor&3';

// ------------------------------------------------------------------- TOTP --

/** RFC 4648 base32 (spaces and padding ignored) to bytes. */
function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const out = [];
  let value = 0;
  let bits = 0;
  for (const ch of text.replace(/[\s=]/g, '').toUpperCase()) {
    const i = alphabet.indexOf(ch);
    if (i < 0) throw new Error(`not base32: ${JSON.stringify(text)}`);
    value = ((value << 5) | i) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 TOTP (HMAC-SHA1, 30 s steps, 6 digits) of `secret` at `unixSeconds`. */
function totp(secret, unixSeconds = Date.now() / 1000) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const mac = createHmac('sha1', secret).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(binary).padStart(6, '0');
}

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

  const tmp = await mkdtemp(path.join(os.tmpdir(), 'portcullis-e2e-'));
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
  // Console errors we provoke on purpose (e.g. a 4xx document for the wrong
  // password) are tolerated only while this predicate is set.
  let tolerateConsole = null;
  const notes = new Set();

  try {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;

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
    console.log(`e2e: backend=${DB_KIND} issuer=${base} workdir=${tmp}`);

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

    await check('portcullis users create (password on stdin) exits 0', async () => {
      const r = await run(
        bin,
        ['users', 'create', '--username', USERNAME, '--name', DISPLAY_NAME, '--email', EMAIL],
        { cwd: tmp, env, input: `${PASSWORD}\n` },
      );
      keepLog('[users create] ', r.stdout + r.stderr);
      assert.equal(r.code, 0, describeRun('portcullis users create', r));
    });

    // A relying party: a confidential client whose redirect URI is a loopback server of
    // this script's (another origin than the provider's).
    const callbacks = [];
    const rp = http.createServer((req, res) => {
      callbacks.push(new URL(req.url, 'http://127.0.0.1'));
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'none'" });
      res.end('<!doctype html><title>Acme callback</title><p>Signed in.</p>');
    });
    await new Promise((resolve) => rp.listen(0, '127.0.0.1', resolve));
    live.rp = rp;
    const rpCallback = `http://127.0.0.1:${rp.address().port}/callback`;
    const rpSignedOut = `http://127.0.0.1:${rp.address().port}/signed-out`;
    let clientSecret = '';
    await check('portcullis clients create registers the relying party', async () => {
      const r = await run(
        bin,
        ['clients', 'create', '--name', 'Acme Tracker', '--kind', 'confidential', '--client-id', 'e2e-app',
          '--redirect-uri', rpCallback, '--post-logout-redirect-uri', rpSignedOut, '--json'],
        { cwd: tmp, env },
      );
      keepLog('[clients create] ', r.stderr);
      assert.equal(r.code, 0, describeRun('portcullis clients create', r));
      clientSecret = JSON.parse(r.stdout).client_secret;
      assert.ok(clientSecret, 'a client_secret is printed once');
    });

    server = spawn(bin, ['serve'], { cwd: tmp, env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.server = server;
    server.stdout.on('data', (d) => keepLog('', d));
    server.stderr.on('data', (d) => keepLog('', d));
    server.on('exit', (code, signal) => {
      serverExit = { code, signal };
    });
    server.on('error', (err) => {
      serverExit = { code: null, signal: null, error: err.message };
    });

    await check('GET /readyz returns 200 within 30 s', async () => {
      const deadline = Date.now() + READY_TIMEOUT_MS;
      let last = 'no response';
      for (;;) {
        if (serverExit) {
          throw new Error(`portcullis serve exited early: ${JSON.stringify(serverExit)}`);
        }
        try {
          const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2_000) });
          if (res.status === 200) return;
          last = `HTTP ${res.status}`;
        } catch (err) {
          last = err?.cause?.code || err?.message || String(err);
        }
        if (Date.now() > deadline) {
          throw new Error(`/readyz not 200 after ${READY_TIMEOUT_MS} ms (last: ${last})`);
        }
        await sleep(200);
      }
    });

    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60_000,
    });
    const context = await browser.newContext({
      baseURL: base,
      viewport: { width: 1280, height: 800 },
      locale: 'en-US',
    });
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
      // ERR_ABORTED: the browser itself cancelled the request because the page navigated
      // away (e.g. the icon fetch when a form is submitted). Real network errors count.
      if (error === 'net::ERR_ABORTED') return;
      failedRequests.push(`${req.method()} ${req.url()}: ${error}`);
    });
    context.on('response', (res) => {
      if (res.status() >= 500) serverErrors.push(`${res.request().method()} ${res.url()} -> ${res.status()}`);
    });

    await mkdir(SCREENSHOT_DIR, { recursive: true });
    const signIn = () => page.getByRole('button', { name: 'Sign in' });

    // 1. Login page.
    await check('GET /login renders the sign-in form', async () => {
      const res = await page.goto('/login', { waitUntil: 'load' });
      assert.ok(res, 'no response for /login');
      assert.equal(res.status(), 200, `/login status ${res.status()}`);
      await page.locator('#username').waitFor({ state: 'visible' });
      await page.locator('#password').waitFor({ state: 'visible' });
      await signIn().waitFor({ state: 'visible' });
    });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'login.png'), fullPage: true });

    // 2. Wrong password: error shown, still on /login.
    await check('wrong password shows an error and stays on /login', async () => {
      await page.locator('#username').fill(USERNAME);
      await page.locator('#password').fill(WRONG_PASSWORD);
      // A 4xx status for the failed sign-in document is legitimate; Chromium
      // logs it as "Failed to load resource: ... status of 4xx".
      tolerateConsole = (text) => /Failed to load resource: the server responded with a status of 4\d\d/.test(text);
      const posted = page.waitForResponse(
        (r) => r.request().method() === 'POST' && pathOf(r.url()) === '/login',
      );
      await signIn().click();
      const res = await posted;
      assert.ok(res.status() < 500, `POST /login (wrong password) -> ${res.status()}`);
      await page.waitForLoadState('load');
      await page.locator('[role="alert"]').first().waitFor({ state: 'visible' });
      assert.equal(pathOf(page.url()), '/login', `URL is ${page.url()}`);
      tolerateConsole = null;
    });

    // 3. Right password: lands on /account showing the user.
    await check('right password signs in and lands on /account', async () => {
      await page.locator('#username').fill(USERNAME);
      await page.locator('#password').fill(PASSWORD);
      await signIn().click();
      await page.waitForURL((u) => u.pathname === '/account', { waitUntil: 'load' });
    });
    await check('/account shows the display name and username', async () => {
      const text = await page.locator('body').innerText();
      assert.ok(text.includes(DISPLAY_NAME), `"${DISPLAY_NAME}" not on /account:\n${text}`);
      assert.ok(text.includes(USERNAME), `"${USERNAME}" not on /account:\n${text}`);
    });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'account.png'), fullPage: true });

    // 4. Session cookie flags.
    await check('session cookie is HttpOnly, Secure, SameSite=Lax, Path=/', async () => {
      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name.endsWith('portcullis_session'));
      assert.ok(session, `no *portcullis_session cookie; got ${cookies.map((c) => c.name).join(', ') || 'none'}`);
      assert.equal(session.httpOnly, true, 'session cookie is not HttpOnly');
      assert.equal(session.secure, true, 'session cookie is not Secure');
      assert.equal(session.sameSite, 'Lax', `session cookie SameSite=${session.sameSite}`);
      assert.equal(session.path, '/', `session cookie Path=${session.path}`);
    });
    await check('session cookie is not readable from JavaScript', async () => {
      const jsCookies = await page.evaluate(() => document.cookie);
      assert.ok(!jsCookies.includes('portcullis_session'), `document.cookie exposes it: ${jsCookies}`);
    });

    // 5. Sign out.
    await check('Sign out ends up on /login', async () => {
      const form = page.locator('form[action="/logout/confirm"]').first();
      await form.getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL((u) => u.pathname === '/login', { waitUntil: 'load' });
    });
    await check('/account after sign-out redirects to /login', async () => {
      await page.goto('/account', { waitUntil: 'load' });
      assert.equal(pathOf(page.url()), '/login', `/account ended at ${page.url()}`);
    });

    // 6. The authorization code flow in a real browser: sign-in, consent, and the
    // redirect chain ending at another origin, which the pages' CSP form-action allows.
    const b64url = (buf) => buf.toString('base64url');
    const authorize = async (extra) => {
      const verifier = b64url(randomBytes(32));
      const challenge = b64url(createHash('sha256').update(verifier).digest());
      const state = b64url(randomBytes(8));
      const q = new URLSearchParams({
        response_type: 'code', client_id: 'e2e-app', redirect_uri: rpCallback,
        scope: 'openid profile email', state, nonce: b64url(randomBytes(8)),
        code_challenge: challenge, code_challenge_method: 'S256', ...extra,
      });
      await page.goto(`/authorize?${q}`, { waitUntil: 'load' });
      return { verifier, state };
    };
    const redeem = async (code, verifier) => {
      const res = await fetch(`${base}/token`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`e2e-app:${clientSecret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: rpCallback, code_verifier: verifier }),
      });
      return { status: res.status, body: await res.json() };
    };
    let flow = null;
    await check('/authorize sends a signed-out browser to the sign-in page', async () => {
      flow = await authorize({});
      assert.equal(pathOf(page.url()), '/login', `ended at ${page.url()}`);
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('Acme Tracker'), 'the sign-in page names the application');
    });
    await check('sign-in leads to the consent page', async () => {
      await page.locator('#username').fill(USERNAME);
      await page.locator('#password').fill(PASSWORD);
      await signIn().click();
      await page.waitForURL((u) => u.pathname === '/consent', { waitUntil: 'load' });
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('See your email address'), `consent lists scopes:\n${text}`);
    });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'consent.png'), fullPage: true });
    await check('Allow returns to the application with code, state and iss', async () => {
      await page.getByRole('button', { name: 'Allow' }).click();
      await page.waitForURL((u) => u.toString().startsWith(rpCallback), { waitUntil: 'load' });
      const cb = callbacks.at(-1);
      assert.ok(cb?.searchParams.get('code'), `no code in ${cb}`);
      assert.equal(cb.searchParams.get('state'), flow.state);
      assert.equal(cb.searchParams.get('iss'), base);
    });
    await check('the code redeems once for an access token and an ID token', async () => {
      const code = callbacks.at(-1).searchParams.get('code');
      const first = await redeem(code, flow.verifier);
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.ok(first.body.id_token && first.body.access_token, JSON.stringify(first.body));
      const info = await fetch(`${base}/userinfo`, { headers: { authorization: `Bearer ${first.body.access_token}` } });
      assert.equal(info.status, 200);
      assert.equal((await info.json()).preferred_username, USERNAME);
      const again = await redeem(code, flow.verifier);
      assert.equal(again.status, 400);
      assert.equal(again.body.error, 'invalid_grant');
    });
    await check('prompt=login: the sign-in form post ends at the application', async () => {
      flow = await authorize({ prompt: 'login' });
      assert.equal(pathOf(page.url()), '/login', `ended at ${page.url()}`);
      await page.locator('#username').fill(USERNAME);
      await page.locator('#password').fill(PASSWORD);
      await signIn().click();
      await page.waitForURL((u) => u.toString().startsWith(rpCallback), { waitUntil: 'load' });
      assert.equal(callbacks.at(-1).searchParams.get('state'), flow.state);
    });

    // 7. RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0). Without an
    // id_token_hint the user confirms on our page; the form's redirect chain ends at the
    // relying party, which the page's CSP form-action must allow.
    const rpLogout = (params) => `/logout?${new URLSearchParams(params)}`;
    await check('RP-initiated logout without a hint asks for confirmation', async () => {
      const res = await page.goto(
        rpLogout({ client_id: 'e2e-app', post_logout_redirect_uri: rpSignedOut, state: 'bye-1' }),
        { waitUntil: 'load' },
      );
      assert.equal(res.status(), 200);
      assert.equal(pathOf(page.url()), '/logout', `ended at ${page.url()}`);
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('Sign out of Portcullis?'), text);
      assert.ok(text.includes('Acme Tracker'), 'the page names the application');
    });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'logout.png'), fullPage: true });
    await check('confirming signs out and returns to the application with state', async () => {
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL((u) => u.toString().startsWith(rpSignedOut), { waitUntil: 'load' });
      const back = callbacks.at(-1);
      assert.equal(back.pathname, '/signed-out');
      assert.equal(back.searchParams.get('state'), 'bye-1');
      await page.goto('/account', { waitUntil: 'load' });
      assert.equal(pathOf(page.url()), '/login', `/account ended at ${page.url()}`);
    });
    let idToken = '';
    await check('signing in again yields a fresh ID token', async () => {
      flow = await authorize({});
      await page.locator('#username').fill(USERNAME);
      await page.locator('#password').fill(PASSWORD);
      await signIn().click();
      await page.waitForURL((u) => u.toString().startsWith(rpCallback), { waitUntil: 'load' });
      const tokens = await redeem(callbacks.at(-1).searchParams.get('code'), flow.verifier);
      assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
      idToken = tokens.body.id_token;
      assert.ok(idToken);
    });
    await check('an id_token_hint of this session logs out at once and returns with state', async () => {
      await page.goto(rpLogout({ id_token_hint: idToken, post_logout_redirect_uri: rpSignedOut, state: 'bye-2' }), {
        waitUntil: 'load',
      });
      assert.ok(page.url().startsWith(rpSignedOut), `ended at ${page.url()}`);
      assert.equal(callbacks.at(-1).searchParams.get('state'), 'bye-2');
    });
    await check('afterwards prompt=none answers login_required', async () => {
      await authorize({ prompt: 'none' });
      const cb = callbacks.at(-1);
      assert.equal(cb.pathname, '/callback');
      assert.equal(cb.searchParams.get('error'), 'login_required');
    });
    await check('an unregistered post_logout_redirect_uri gets an error page, not a redirect', async () => {
      tolerateConsole = (text) => /Failed to load resource: the server responded with a status of 400/.test(text);
      const res = await page.goto(
        rpLogout({ id_token_hint: idToken, post_logout_redirect_uri: `${rpSignedOut}?foo=bar` }),
        { waitUntil: 'load' },
      );
      tolerateConsole = null;
      assert.equal(res.status(), 400);
      assert.equal(pathOf(page.url()), '/logout');
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('This sign-out request cannot be completed'), text);
    });

    await check('signed out already: the signed-out page links back to the application', async () => {
      const res = await page.goto(
        rpLogout({ client_id: 'e2e-app', post_logout_redirect_uri: rpSignedOut, state: 'bye-3' }),
        { waitUntil: 'load' },
      );
      assert.equal(res.status(), 200);
      assert.equal(pathOf(page.url()), '/logout', 'no automatic redirect without a hint');
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'signed-out.png'), fullPage: true });
      await page.getByRole('link', { name: 'Return to Acme Tracker' }).click();
      await page.waitForURL((u) => u.toString().startsWith(rpSignedOut), { waitUntil: 'load' });
      assert.equal(callbacks.at(-1).searchParams.get('state'), 'bye-3');
    });

    // 8. Two-step verification, set up from the account page as a person would: the QR
    // code is on the page, the key is read off it, the code comes from an authenticator
    // (computed here). Last, since a second factor changes every later sign-in.
    await check('the TOTP helper matches RFC 6238 test vectors', async () => {
      const rfcSecret = Buffer.from('12345678901234567890');
      assert.equal(totp(rfcSecret, 59), '287082');
      assert.equal(totp(rfcSecret, 1111111109), '081804');
      assert.equal(base32Decode('GEZD GNBV GY3T QOJQ').toString(), '1234567890');
    });
    await check('signing in again lands on /account with a two-step verification section', async () => {
      await page.goto('/login', { waitUntil: 'load' });
      await page.locator('#username').fill(USERNAME);
      await page.locator('#password').fill(PASSWORD);
      await signIn().click();
      await page.waitForURL((u) => u.pathname === '/account', { waitUntil: 'load' });
      await page.getByRole('heading', { name: 'Two-step verification' }).waitFor({ state: 'visible' });
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('No authenticator app is set up.'), text);
    });
    let totpSecret = null;
    await check('"Set up an authenticator app" shows a QR code and the key', async () => {
      await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
      await page.waitForURL((u) => u.pathname === '/account/totp', { waitUntil: 'load' });
      const qr = page.locator('.totp-qr svg');
      await qr.waitFor({ state: 'visible' });
      const box = await qr.boundingBox();
      assert.ok(box && box.width >= 150 && box.height >= 150, `QR code box ${JSON.stringify(box)}`);
      const shown = (await page.locator('#totp-secret').innerText()).trim();
      assert.match(shown, /^([A-Z2-7]{4} ){7}[A-Z2-7]{4}$/, `key as shown: ${shown}`);
      totpSecret = base32Decode(shown);
      assert.equal(totpSecret.length, 20);
      const code = page.getByLabel('6-digit code');
      assert.equal(await code.getAttribute('autocomplete'), 'one-time-code');
      assert.equal(await code.getAttribute('inputmode'), 'numeric');
      assert.equal(await page.getByLabel('Name').inputValue(), 'Authenticator app');
    });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'totp-setup.png'), fullPage: true });
    await check('a wrong code shows the same setup again with the error by the field', async () => {
      const right = totp(totpSecret);
      const wrong = [...right].map((d) => String((Number(d) + 5) % 10)).join('');
      const keyBefore = await page.locator('#totp-secret').innerText();
      // The page answers 422: Chromium logs the 4xx document as a failed resource.
      tolerateConsole = (text) => /Failed to load resource: the server responded with a status of 422/.test(text);
      await page.getByLabel('6-digit code').fill(wrong);
      await page.getByRole('button', { name: 'Turn on two-step verification' }).click();
      await page.waitForURL((u) => u.pathname === '/account/totp/confirm', { waitUntil: 'load' });
      await page.locator('#code-error').waitFor({ state: 'visible' });
      tolerateConsole = null;
      const error = await page.locator('#code-error').innerText();
      assert.ok(error.includes('That code is not right'), error);
      assert.equal(await page.getByLabel('6-digit code').getAttribute('aria-invalid'), 'true');
      assert.equal(await page.locator('#totp-secret').innerText(), keyBefore, 'the same key');
      await page.locator('.totp-qr svg').waitFor({ state: 'visible' });
    });
    let recoveryCodes = [];
    await check('the code from the app turns it on and shows ten recovery codes once', async () => {
      await page.getByLabel('Name').fill('E2E phone');
      await page.getByLabel('6-digit code').fill(totp(totpSecret));
      await page.getByRole('button', { name: 'Turn on two-step verification' }).click();
      await page.waitForURL((u) => u.pathname === '/account/totp/confirm', { waitUntil: 'load' });
      await page.getByRole('heading', { name: 'Two-step verification is on' }).waitFor({ state: 'visible' });
      const codes = await page.locator('ol.recovery-codes li').allInnerTexts();
      assert.equal(codes.length, 10, codes.join('\n'));
      for (const c of codes) assert.match(c.trim(), /^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/, c);
      recoveryCodes = codes.map((c) => c.trim());
    });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'recovery-codes.png'), fullPage: true });
    await check('Done returns to /account, which lists the app and 10 of 10 codes left', async () => {
      await page.getByRole('link', { name: 'Done' }).click();
      await page.waitForURL((u) => u.pathname === '/account', { waitUntil: 'load' });
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('E2E phone'), text);
      assert.ok(text.includes('10 of 10 left'), text);
    });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'account-two-step.png'), fullPage: true });
    await check('Remove first asks this password-only session for the second factor', async () => {
      await page.getByRole('button', { name: 'Remove authenticator app E2E phone' }).click();
      await page.waitForURL((u) => u.pathname === '/login', { waitUntil: 'load' });
      await page.getByRole('heading', { name: 'Two-step verification' }).waitFor({ state: 'visible' });
      const code = page.getByLabel('Authentication code');
      assert.equal(await code.getAttribute('autocomplete'), 'one-time-code');
      assert.equal(await code.getAttribute('inputmode'), 'numeric');
      assert.equal(await page.locator('input[name="password"]').count(), 0, 'no password asked');
    });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'second-factor.png'), fullPage: true });
    await check('a recovery code steps the session up and returns to /account', async () => {
      await page.getByText('Use a recovery code instead').click();
      await page.getByLabel('Recovery code').fill(recoveryCodes[0]);
      await page.getByRole('button', { name: 'Use recovery code' }).click();
      await page.waitForURL((u) => u.pathname === '/account', { waitUntil: 'load' });
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('9 of 10 left'), text);
    });
    await check('Remove takes the authenticator app off the account', async () => {
      await page.getByRole('button', { name: 'Remove authenticator app E2E phone' }).click();
      await page.waitForURL((u) => u.pathname === '/account', { waitUntil: 'load' });
      const text = await page.locator('body').innerText();
      assert.ok(text.includes('The authenticator app was removed'), text);
      assert.ok(text.includes('No authenticator app is set up.'), text);
    });

    // 9. Nothing went wrong in the background.
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
    live.rp?.close();
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

await runE2e('e2e', main);
