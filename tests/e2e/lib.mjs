// Shared by the browser end-to-end tests (run.mjs, spa.mjs): configuration from the
// environment, the check counter, child processes, Postgres scratch databases, cleanup
// and the watchdog.

import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..');
export const SCREENSHOT_DIR = process.env.E2E_SCREENSHOT_DIR
  ? path.resolve(process.env.E2E_SCREENSHOT_DIR)
  : path.join(REPO_ROOT, 'docs', 'images');
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const DB_KIND = (process.env.E2E_DB || 'sqlite').toLowerCase();
export const PG_ADMIN_URL =
  process.env.E2E_PG_URL ||
  process.env.TEST_DATABASE_URL ||
  'postgres://postgres@127.0.0.1:5432/postgres';

export const READY_TIMEOUT_MS = 30_000;
export const CLI_TIMEOUT_MS = 60_000;
export const ACTION_TIMEOUT_MS = 15_000;
export const OVERALL_TIMEOUT_MS = 240_000;

// ---------------------------------------------------------------- helpers --

let passed = 0;
/** Run one named check; counts it when it does not throw. */
export async function check(name, fn) {
  try {
    await fn();
  } catch (err) {
    const e = new Error(`check failed: ${name}\n  ${err?.message ?? err}`);
    e.cause = err;
    throw e;
  }
  passed += 1;
  console.log(`  ok ${passed} - ${name}`);
}

export const serverLog = [];
export function keepLog(prefix, chunk) {
  for (const line of chunk.toString('utf8').split(/\r?\n/)) {
    if (line.length === 0) continue;
    serverLog.push(`${prefix}${line}`);
    if (serverLog.length > 2000) serverLog.splice(0, serverLog.length - 2000);
  }
}

/** Run a command to completion; resolves { code, signal, stdout, stderr }. */
export function run(cmd, args, { input, cwd, env, timeoutMs = CLI_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${path.basename(cmd)} ${args.join(' ')} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {}); // EPIPE if the child exits early
    child.stdin.end(input ?? '');
  });
}

export function describeRun(what, r) {
  return (
    `${what} exited with ${r.code ?? r.signal}\n` +
    `--- stdout ---\n${r.stdout.trimEnd()}\n--- stderr ---\n${r.stderr.trimEnd()}`
  );
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export async function psql(sql) {
  const r = await run('psql', [PG_ADMIN_URL, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
  });
  if (r.code !== 0) throw new Error(describeRun(`psql -c ${JSON.stringify(sql)}`, r));
}

/** Stop a spawned process: SIGTERM, then SIGKILL after a grace period. */
export async function stop(child, graceMs = 5_000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const done = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!done) {
    child.kill('SIGKILL');
    await Promise.race([exited, sleep(2_000)]);
  }
}

export const pathOf = (u) => new URL(u).pathname;
export const safePath = (u) => {
  try {
    return new URL(u).pathname;
  } catch {
    return '';
  }
};

// What must be torn down even if we are cut short (watchdog, Ctrl-C).
export const live = { tmp: null, pgDb: null, server: null };

/** Last-resort synchronous cleanup before process.exit(). */
export function emergencyCleanup() {
  try {
    live.server?.kill('SIGKILL');
  } catch {}
  if (live.pgDb) {
    spawnSync('psql', [PG_ADMIN_URL, '-X', '-q', '-c', `DROP DATABASE IF EXISTS "${live.pgDb}" WITH (FORCE)`], {
      stdio: 'ignore',
      timeout: 15_000,
    });
  }
  if (live.tmp) rmSync(live.tmp, { recursive: true, force: true });
}

/** Runs `main` under a watchdog, with cleanup on signals; prints the tally line that
 * scripts/test adds up and sets the exit code. */
export async function runE2e(label, main) {
  function reportFailure(err) {
    console.error(`\n${label} FAILED (backend=${DB_KIND}): ${err?.stack || err}`);
    if (err?.cause?.stack && err.cause.stack !== err.stack) console.error(`caused by: ${err.cause.stack}`);
    const tail = serverLog.slice(-50);
    console.error(`\n--- last ${tail.length} server log lines ---`);
    for (const line of tail) console.error(line);
    console.error('--- end of server log ---');
    console.log(`e2e: ${passed} passed, 1 failed`);
  }
  const watchdog = setTimeout(() => {
    reportFailure(new Error(`e2e run exceeded ${OVERALL_TIMEOUT_MS / 1000} s`));
    emergencyCleanup();
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  watchdog.unref();
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      console.error(`\n${label}: interrupted by ${sig}`);
      emergencyCleanup();
      process.exit(130);
    });
  }
  try {
    await main();
    console.log(`e2e: ${passed} passed, 0 failed`);
    process.exitCode = 0;
  } catch (err) {
    reportFailure(err);
    process.exitCode = 1;
  } finally {
    clearTimeout(watchdog);
  }
}
