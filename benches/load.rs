//! Load benchmark: starts the release `portcullis` binary as a child process on loopback,
//! seeds it through the library, and drives it with keep-alive HTTP load from this
//! process (a second process relative to the server, as DESIGN.md "Performance budget"
//! asks). See docs/benchmarks.md for what is measured and how to read it.
//!
//! ```sh
//! cargo bench --bench load                                  # SQLite, table on stdout
//! BENCH_DB=postgres cargo bench --bench load                # Postgres on 127.0.0.1:5432
//! BENCH_WRITE=docs/benchmarks.md cargo bench --bench load   # also update the doc
//! ```
//!
//! Environment: `BENCH_DB` (`sqlite` | `postgres`), `BENCH_DATABASE_URL` (Postgres admin
//! URL, default `postgres://postgres@127.0.0.1:5432/postgres`), `BENCH_CONCURRENCY` (16),
//! `BENCH_REQUESTS` (4000 per read-only scenario and for introspection),
//! `BENCH_TOKEN_REQUESTS` (2000 per `/token` scenario at full concurrency),
//! `BENCH_SERVER_BIN` (server binary; default: the one cargo built for this bench),
//! `BENCH_WRITE` (a markdown file, relative to the crate root).
//!
//! Under `cargo test --all-targets` this target is run without `--bench`; it then does
//! nothing, so the test suite never starts a load run.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use portcullis::audit::{Actor, AuditEvent, AuditKind, Outcome};
use portcullis::clients::Registration;
use portcullis::clock::SystemClock;
use portcullis::config::Settings;
use portcullis::domain::client::ClientKind;
use portcullis::domain::pkce::CodeChallenge;
use portcullis::domain::scope::ScopeSet;
use portcullis::domain::secret::OpaqueToken;
use portcullis::domain::session::BrowserSession;
use portcullis::domain::user::{NewUser, Password, User, Username};
use portcullis::keys::{Expectations, KeyRing, MasterKey};
use portcullis::password::PasswordHasher;
use portcullis::storage::{AuthorizationCodeRecord, IssueCode, Store};
use reqwest::StatusCode;
use time::OffsetDateTime;

const REDIRECT_URI: &str = "https://bench.example.com/cb";
const CLIENT_ID: &str = "bench-web";
/// A web app allowed the refresh_token grant (the refresh scenario).
const REFRESH_CLIENT_ID: &str = "bench-app";
/// A service: client_credentials for itself, introspection of users' tokens.
const SERVICE_CLIENT_ID: &str = "bench-service";
const API_SCOPE: &str = "api.read";
const PASSWORD: &str = "correct horse battery staple";
const WRONG_PASSWORD: &str = "not the password at all";
const LOGIN_USER: &str = "bench";
const FLOOD_USER: &str = "bench-flood";
const USER_AGENT: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0";

/// Sign-in scenario: argon2id is deliberately expensive, so fewer requests.
const LOGIN_REQUESTS: usize = 200;
const LOGIN_CONCURRENCY: usize = 4;
/// The "token requests keep their latency" check: /token at this concurrency, alone and
/// while `FLOOD_CONCURRENCY` sign-ins keep the argon2 pool saturated.
const SIDE_TOKEN_REQUESTS: usize = 500;
const SIDE_TOKEN_CONCURRENCY: usize = 4;
const FLOOD_CONCURRENCY: usize = 8;
/// Upper bound on flood sign-ins (well under `login.max_failures` below).
const FLOOD_MAX: usize = 600;
const TOKEN_WARMUP: usize = 100;
const GET_WARMUP: usize = 200;
const LOGIN_WARMUP: usize = 8;

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/load: run it with `cargo bench --bench load` (skipped under cargo test)");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("benches/load: could not start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benches/load: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    fn key(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Db::Sqlite => "SQLite",
            Db::Postgres => "Postgres",
        }
    }
}

struct Options {
    db: Db,
    admin_url: String,
    concurrency: usize,
    requests: usize,
    token_requests: usize,
    write: Option<PathBuf>,
    server_bin: PathBuf,
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            let n: usize = v
                .trim()
                .parse()
                .with_context(|| format!("{name} must be a positive integer, not {v:?}"))?;
            if n == 0 {
                bail!("{name} must be at least 1");
            }
            Ok(n)
        }
        _ => Ok(default),
    }
}

impl Options {
    fn from_env() -> Result<Self> {
        let db = match std::env::var("BENCH_DB").as_deref() {
            Ok("sqlite") | Ok("") | Err(_) => Db::Sqlite,
            Ok("postgres") => Db::Postgres,
            Ok(other) => bail!("BENCH_DB must be sqlite or postgres, not {other:?}"),
        };
        let admin_url = std::env::var("BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let crate_root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let write = std::env::var("BENCH_WRITE")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|p| crate_root.join(p));
        // Cargo builds the crate's binaries for every bench target (in the bench profile,
        // which is the release profile), so this is `$CARGO_TARGET_DIR/release/portcullis`.
        let server_bin = std::env::var_os("BENCH_SERVER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_portcullis")));
        if !server_bin.is_file() {
            bail!(
                "the server binary {} is missing: run `cargo build --release --bin portcullis` \
                 first (with the same CARGO_TARGET_DIR), or set BENCH_SERVER_BIN",
                server_bin.display()
            );
        }
        Ok(Self {
            db,
            admin_url,
            concurrency: env_usize("BENCH_CONCURRENCY", 16)?,
            requests: env_usize("BENCH_REQUESTS", 4000)?,
            token_requests: env_usize("BENCH_TOKEN_REQUESTS", 2000)?,
            write,
            server_bin,
        })
    }
}

// ---------------------------------------------------------------------------------------
// The server child process, its database and temp dir: always cleaned up (Drop).

struct Guard {
    child: Option<Child>,
    /// (admin URL, database name) of a Postgres database to drop.
    pg: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl Guard {
    fn stop_server(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // A graceful stop first (SIGTERM through kill(1): this crate forbids unsafe), then
        // SIGKILL if it lingers.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop_server();
        if let Some((admin_url, name)) = self.pg.take() {
            // Drop may run inside the runtime: use a thread with a runtime of its own.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    use sqlx::Connection as _;
                    match sqlx::PgConnection::connect(&admin_url).await {
                        Ok(mut conn) => {
                            if let Err(e) = sqlx::query(&format!(
                                "drop database if exists \"{name}\" with (force)"
                            ))
                            .execute(&mut conn)
                            .await
                            {
                                eprintln!("benches/load: could not drop database {name}: {e}");
                            }
                        }
                        Err(e) => eprintln!("benches/load: could not drop database {name}: {e}"),
                    }
                });
            })
            .join();
        }
        // `dir` (the temp dir) is removed when the fields drop, after the server stopped.
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Spawns `portcullis serve` on `port` and waits for the first 200 from `/readyz`;
/// returns the time from spawn to that answer.
async fn start_server(
    guard: &mut Guard,
    opts: &Options,
    db_url: &str,
    key_file: &Path,
    port: u16,
) -> Result<Duration> {
    let log_path = guard.dir.path().join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .context("opening the server log")?;
    let mut cmd = Command::new(&opts.server_bin);
    cmd.arg("serve")
        .current_dir(guard.dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Nothing from the caller's environment may change the server's configuration.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PORTCULLIS") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.env("PORTCULLIS__ISSUER", format!("http://127.0.0.1:{port}"))
        .env("PORTCULLIS__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS__DATABASE__URL", db_url)
        .env("PORTCULLIS__KEYS__MASTER_KEY_FILE", key_file)
        .env("PORTCULLIS__KEYS__GENERATE_MASTER_KEY", "false")
        .env("PORTCULLIS__LOG__LEVEL", "warn")
        .env("PORTCULLIS__LOGIN__FORMS_PER_IP_PER_MINUTE", "1000000")
        .env("PORTCULLIS__LOGIN__IP_MAX_FAILURES", "1000000")
        .env("PORTCULLIS__LOGIN__MAX_FAILURES", "1000");
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()?;
    let url = format!("http://127.0.0.1:{port}/readyz");
    let started = Instant::now();
    guard.child = Some(cmd.spawn().with_context(|| {
        format!(
            "starting {} (run `cargo build --release --bin portcullis` first)",
            opts.server_bin.display()
        )
    })?);
    loop {
        if let Ok(r) = probe.get(&url).send().await
            && r.status() == StatusCode::OK
        {
            return Ok(started.elapsed());
        }
        if let Some(child) = guard.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            guard.child = None;
            bail!(
                "the server exited ({status}) before it was ready; its log:\n{}",
                log_tail(&log_path)
            );
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "the server was not ready after 30 s; its log:\n{}",
                log_tail(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------------------
// /proc readings of the child

/// The number in a field of /proc/<pid>/status (`VmRSS` and `VmHWM` are in KiB).
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// User + system CPU time of a process so far.
fn proc_cpu(pid: u32, ticks_per_sec: f64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / ticks_per_sec))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

// ---------------------------------------------------------------------------------------
// Load generation

/// What one request produced: its status, or why it has none worth counting (a transport
/// error, or a response the scenario's own check refused).
type Outcome1 = Result<u16, &'static str>;

const TRANSPORT_ERROR: &str = "transport error";

/// A request of a scenario whose closure is built by a helper function.
type OpFuture = std::pin::Pin<Box<dyn Future<Output = Outcome1> + Send>>;

#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
    /// Unexpected statuses, or failures without one, and how often.
    unexpected: BTreeMap<String, usize>,
}

/// Runs up to `count` requests (`op(i)` for i in 0..count) on `concurrency` tasks, each
/// issuing its next request as soon as the previous one answered; stops early when `stop`
/// is set.
async fn load<F, Fut>(
    count: usize,
    concurrency: usize,
    expected: u16,
    stop: Option<Arc<AtomicBool>>,
    op: F,
) -> Result<Sample>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome1> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.min(count) {
        let (op, next, stop) = (Arc::clone(&op), Arc::clone(&next), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            loop {
                if stop.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                let result = op(i).await;
                s.latencies.push(t.elapsed());
                match result {
                    Ok(status) if status == expected => {}
                    Ok(status) => {
                        s.errors += 1;
                        *s.unexpected.entry(status.to_string()).or_default() += 1;
                    }
                    Err(reason) => {
                        s.errors += 1;
                        *s.unexpected.entry(reason.to_owned()).or_default() += 1;
                    }
                }
            }
            s
        }));
    }
    let mut total = Sample::default();
    for task in tasks {
        let s = task.await.context("a load task panicked")?;
        total.latencies.extend(s.latencies);
        total.errors += s.errors;
        for (k, v) in s.unexpected {
            *total.unexpected.entry(k).or_default() += v;
        }
    }
    total.elapsed = started.elapsed();
    total.latencies.sort();
    Ok(total)
}

/// Sends a request and reads the whole body (so the connection goes back to the pool).
async fn exchange(request: reqwest::RequestBuilder) -> Outcome1 {
    let response = request.send().await.map_err(|_| TRANSPORT_ERROR)?;
    let status = response.status().as_u16();
    response.bytes().await.map_err(|_| TRANSPORT_ERROR)?;
    Ok(status)
}

/// Like `exchange`, and parses the body as JSON (`/token` and `/introspect` answer JSON,
/// errors included).
async fn exchange_json(
    request: reqwest::RequestBuilder,
) -> Result<(u16, serde_json::Value), &'static str> {
    let response = request.send().await.map_err(|_| TRANSPORT_ERROR)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|_| TRANSPORT_ERROR)?;
    let json = serde_json::from_slice(&body).map_err(|_| "a body that is not JSON")?;
    Ok((status, json))
}

fn http_client(concurrency: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// A cookie-keeping client that posts forms like a browser on our pages.
fn browser(issuer: &str) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::ORIGIN, issuer.parse()?);
    headers.insert(
        reqwest::header::USER_AGENT,
        reqwest::header::HeaderValue::from_static(USER_AGENT),
    );
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// Loads `/login` in `client`; returns the form's `tx` and `csrf_token`.
async fn login_form(client: &reqwest::Client, base: &str) -> Result<(String, String)> {
    let response = client.get(format!("{base}/login")).send().await?;
    if response.status() != StatusCode::OK {
        bail!("GET /login answered {}", response.status());
    }
    let html = response.text().await?;
    let tx = hidden_field(&html, "tx").ok_or_else(|| anyhow!("no tx field on /login"))?;
    let csrf =
        hidden_field(&html, "csrf_token").ok_or_else(|| anyhow!("no csrf_token on /login"))?;
    Ok((tx, csrf))
}

// ---------------------------------------------------------------------------------------
// Results

struct Row {
    scenario: String,
    concurrency: usize,
    sample: Sample,
    /// Server CPU time spent during the run.
    server_cpu: Option<Duration>,
    /// CPU time of the Postgres backends during the run (none on SQLite: in the server).
    db_cpu: Option<Duration>,
    /// The server's RSS right after the run, in KiB.
    rss_after_kib: Option<u64>,
    /// Statuses counted as success besides the one expected (documented in the table).
    note: String,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

impl Row {
    fn markdown(&self, db: Db) -> String {
        let s = &self.sample;
        let n = s.latencies.len();
        let rps = n as f64 / s.elapsed.as_secs_f64().max(1e-9);
        let per_request = |cpu: Option<Duration>| {
            cpu.map_or_else(
                || "n/a".into(),
                |c| format!("{:.0}", c.as_secs_f64() * 1e6 / n.max(1) as f64),
            )
        };
        let cpu = per_request(self.server_cpu);
        let db_cpu = match db {
            Db::Sqlite => "–".to_owned(),
            Db::Postgres => per_request(self.db_cpu),
        };
        let mut notes = self.note.clone();
        if !s.unexpected.is_empty() {
            let list: Vec<String> = s
                .unexpected
                .iter()
                .map(|(what, count)| format!("{what} ×{count}"))
                .collect();
            if !notes.is_empty() {
                notes.push_str("; ");
            }
            notes.push_str(&list.join(", "));
        }
        format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.scenario,
            n,
            self.concurrency,
            rps,
            ms(percentile(&s.latencies, 0.50)),
            ms(percentile(&s.latencies, 0.90)),
            ms(percentile(&s.latencies, 0.99)),
            ms(s.latencies.last().copied().unwrap_or_default()),
            s.errors,
            cpu,
            db_cpu,
            self.rss_after_kib
                .map_or_else(|| "n/a".into(), |k| format!("{:.0}", k as f64 / 1024.0)),
            notes,
        )
    }
}

struct ProcessFigures {
    first_start: Duration,
    restart: Duration,
    idle_rss_kib: Option<u64>,
    after_rss_kib: Option<u64>,
    peak_rss_kib: Option<u64>,
    idle_threads: Option<u64>,
    after_threads: Option<u64>,
    crypto: CryptoCosts,
}

/// What one cryptographic operation of the token endpoints costs, measured in the load
/// process with the server's own RS256 key (loaded from the database with the master key):
/// the median of `CRYPTO_ROUNDS` sequential calls, taken once the server is idle.
struct CryptoCosts {
    sign: Duration,
    verify: Duration,
    seal: Duration,
}

const CRYPTO_ROUNDS: usize = 300;

async fn crypto_costs(
    store: &Arc<dyn Store>,
    key_file: &Path,
    issuer: &str,
) -> Result<CryptoCosts> {
    let master = MasterKey::from_file(key_file)?;
    let ring = KeyRing::load_or_init(Arc::clone(store), master, Arc::new(SystemClock)).await?;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    // The claims of an access token as `/token` issues them.
    let claims = serde_json::json!({
        "iss": issuer,
        "sub": uuid::Uuid::new_v4().to_string(),
        "aud": issuer,
        "client_id": CLIENT_ID,
        "scope": "openid profile email",
        "iat": now,
        "exp": now + 600,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sid": uuid::Uuid::new_v4().to_string(),
        "auth_time": now,
    });
    let mut token = String::new();
    let mut signs = Vec::with_capacity(CRYPTO_ROUNDS);
    for _ in 0..CRYPTO_ROUNDS {
        let t = Instant::now();
        token = ring.sign("at+jwt", &claims)?;
        signs.push(t.elapsed());
    }
    let expected = Expectations {
        typ: "at+jwt",
        issuer,
        audience: Some(issuer),
        allow_expired: false,
    };
    let mut verifies = Vec::with_capacity(CRYPTO_ROUNDS);
    for _ in 0..CRYPTO_ROUNDS {
        let t = Instant::now();
        ring.verify::<serde_json::Value>(&token, &expected)?;
        verifies.push(t.elapsed());
    }
    // About the size of a sealed refresh response (access token, ID token, refresh token).
    let plain = vec![b'x'; 2 * token.len()];
    let mut seals = Vec::with_capacity(CRYPTO_ROUNDS);
    for _ in 0..CRYPTO_ROUNDS {
        let t = Instant::now();
        ring.seal(&plain, b"bench")?;
        seals.push(t.elapsed());
    }
    Ok(CryptoCosts {
        sign: median(signs),
        verify: median(verifies),
        seal: median(seals),
    })
}

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

fn machine_facts() -> String {
    let cpu = first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = first_line_with("/proc/meminfo", "MemAvailable")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(
            || "?".into(),
            |k| format!("{:.1} GiB", k as f64 / 1048576.0),
        );
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into());
    format!("{cpu}, {cores} cores (nproc), {mem} memory available, load average {load} at start")
}

fn git_revision() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev} + uncommitted changes")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    }
}

fn report(opts: &Options, process: &ProcessFigures, rows: &[Row]) -> String {
    let now = OffsetDateTime::now_utc();
    let date = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default();
    let profile = if cfg!(debug_assertions) {
        "debug (not representative!)"
    } else {
        "release (thin LTO, as in Cargo.toml)"
    };
    let mut out = String::new();
    out.push_str(&format!("### {}\n\n", opts.db.title()));
    out.push_str(&format!(
        "Run {date} · commit {} · server and load generator built with the {profile} profile · \
         {} · `BENCH_CONCURRENCY={}` `BENCH_REQUESTS={}` `BENCH_TOKEN_REQUESTS={}`\n\n",
        git_revision(),
        machine_facts(),
        opts.concurrency,
        opts.requests,
        opts.token_requests,
    ));
    out.push_str("| process | figure |\n|---|---|\n");
    out.push_str(&format!(
        "| start-up to ready, fresh database (migrations + first signing key) | {} ms |\n",
        ms(process.first_start)
    ));
    out.push_str(&format!(
        "| start-up to ready, existing database | {} ms |\n",
        ms(process.restart)
    ));
    out.push_str(&format!(
        "| idle RSS after ready | {} |\n",
        mib(process.idle_rss_kib)
    ));
    out.push_str(&format!(
        "| RSS after all scenarios | {} |\n",
        mib(process.after_rss_kib)
    ));
    out.push_str(&format!(
        "| peak RSS (VmHWM) | {} |\n",
        mib(process.peak_rss_kib)
    ));
    let count = |n: Option<u64>| n.map_or_else(|| "n/a".into(), |n| n.to_string());
    out.push_str(&format!(
        "| server threads idle / after all scenarios | {} / {} |\n",
        count(process.idle_threads),
        count(process.after_threads)
    ));
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    out.push_str(&format!(
        "| one RS256 signature (RSA-2048) / verification, in the load process (median of {CRYPTO_ROUNDS}) | {} / {} |\n",
        us(process.crypto.sign),
        us(process.crypto.verify)
    ));
    out.push_str(&format!(
        "| one AES-256-GCM seal of a refresh response (the retry window), in the load process | {} |\n\n",
        us(process.crypto.seal)
    ));
    out.push_str(
        "| scenario | requests | concurrency | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU µs/req | Postgres CPU µs/req | server RSS after, MiB | notes |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        out.push_str(&row.markdown(opts.db));
        out.push('\n');
    }
    out
}

const DOC_INTRO: &str = r#"# Benchmarks

Figures for DESIGN.md's "Performance budget", produced by the load harness in
`benches/load.rs`. It starts the release `portcullis` binary as a child process on
127.0.0.1, seeds clients, users and authorization codes through the library, and sends
load from the bench process (a second process, over keep-alive loopback connections).

**These figures are indicative only.** They come from a 2-core VM shared by several
engineers, which was running other builds and tests at the same time; the server, the
load generator and (for Postgres) the database also share those two cores. req/s and
latencies move by tens of percent from one run to the next. Compare runs on the same
machine, not with other providers' published numbers, and compare scenarios by "server
CPU µs/req" (and "Postgres CPU µs/req"), which are less sensitive to that noise.

## What is measured

- **Start-up to ready**: spawn of `portcullis serve` to the first `200` from `/readyz`;
  once on a fresh database (migrations and generation of the first RSA signing key), once
  restarted on the same database.
- **RSS** of the server process (VmRSS from `/proc/<pid>/status`) idle after readiness
  (0.5 s after the first 200), after each scenario and after all of them, its peak
  (VmHWM), and its thread count.
- **Server CPU µs/req**: the child's user + system time during the scenario (from
  `/proc/<pid>/stat`) divided by the requests. On SQLite it includes the database's work
  (SQLite runs inside the server).
- **Postgres CPU µs/req** (Postgres only): the user + system time of the Postgres backend
  processes connected to the bench database (their pids from `pg_stat_activity`, their
  times from `/proc`) during the scenario, divided by the requests. Postgres's background
  processes (WAL writer, checkpointer) are not in it; they serve every database on the
  machine.
- **Cryptography per operation**, measured after the scenarios in the load process with
  the server's own keys (loaded from the database with the master key), the median of 300
  sequential calls: one RS256 signature of access-token claims (RSA-2048), one
  verification of it, and one AES-256-GCM seal of a refresh response's size. The server
  runs the same code, so these split a request's server CPU into signing and the rest.
- Per scenario, after a short warm-up: throughput, p50 / p90 / p99 / max latency, and
  errors (any status other than the one expected, a transport error, or a response that
  fails the scenario's own check):
  - `GET /.well-known/openid-configuration` and `GET /jwks.json`;
  - `GET /userinfo` with one valid access token;
  - `POST /token`, `authorization_code` grant with PKCE and `client_secret_basic`, every
    request redeeming a distinct code pre-created in the database, for a client without
    the refresh grant (so no refresh family is created). Scope `openid profile email`:
    each response carries an access token and an ID token, two RS256 signatures;
  - `POST /token`, `refresh_token` grant, for a second confidential client allowed
    `authorization_code` and `refresh_token`. One rotation chain per concurrent worker
    (16), each in a browser session of its own (16 sign-ins of the same user through the
    pages), started by redeeming a seeded code through `/token`. A request presents its
    chain's newest refresh token and the response's refresh token feeds the chain's next
    request, so **no token is ever presented twice**: every request is a real rotation
    (the compare-and-swap transaction, an access token and an ID token signed, the
    response sealed for the retry window), never a retry answered from the window, and
    a 200 without a new refresh token counts as an error. The warm-up continues the same
    chains;
  - `POST /token`, `client_credentials` grant: a confidential client allowed only that
    grant and the scope `api.read` asks for `scope=api.read` (one RS256 signature, an
    audit row, no ID or refresh token);
  - `POST /introspect` by that client (a resource server, `client_secret_basic`) of a
    user's live access token (`token_type_hint=access_token`; the token comes from a code
    redeemed just before, so it cannot expire during the run, and carries a `sid`); every
    answer is parsed and must say `"active": true`;
  - `POST /login` with a wrong password for an existing user: each attempt costs one
    argon2id verification (m=19 MiB, t=2), on a pool of cores − 1 permits (at least 1);
    the expected answer is the re-rendered form (200);
  - `POST /token` (`authorization_code`) at concurrency 4 on an idle server, then again
    while 8 concurrent wrong-password sign-ins keep the argon2 pool saturated: the
    design's "token requests keep their latency" claim.

## How to run

```sh
cargo build --release --bin portcullis      # optional: cargo bench builds it too
cargo bench --bench load                    # SQLite; prints the tables
BENCH_DB=postgres cargo bench --bench load  # Postgres at 127.0.0.1:5432 (user postgres)
# Update this file (each backend replaces only its own section):
BENCH_WRITE=docs/benchmarks.md cargo bench --bench load
BENCH_WRITE=docs/benchmarks.md BENCH_DB=postgres cargo bench --bench load
```

`cargo bench` compiles the harness and the crate's binaries in the release profile; the
harness runs `$CARGO_TARGET_DIR/release/portcullis` (default `target/release/portcullis`)
and tells you to run `cargo build --release --bin portcullis` if it is missing. Under
`cargo test --all-targets` the bench target is run without `--bench` and does nothing.

Knobs: `BENCH_CONCURRENCY` (16; also the number of refresh chains), `BENCH_REQUESTS` (4000
per read-only scenario and for introspection), `BENCH_TOKEN_REQUESTS` (2000 per `/token`
scenario at full concurrency), `BENCH_DATABASE_URL` (the Postgres admin URL; a database
`bench_<random>` is created there and dropped afterwards), `BENCH_SERVER_BIN`. The server
runs with defaults except: log level `warn`, and sign-in throttling raised
(`login.forms_per_ip_per_minute`, `login.ip_max_failures`, `login.max_failures`) so that
the load, all from one IP address and one account, is measured rather than refused.

## Results

"#;

fn section(db: Db, body: &str) -> String {
    format!(
        "<!-- bench:{key}:start -->\n{body}<!-- bench:{key}:end -->\n",
        key = db.key()
    )
}

fn write_doc(path: &Path, db: Db, body: &str) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut text = DOC_INTRO.to_owned();
            for other in [Db::Sqlite, Db::Postgres] {
                text.push_str(&section(
                    other,
                    &format!("### {}\n\n_Not run yet._\n\n", other.title()),
                ));
                text.push('\n');
            }
            text
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let start = format!("<!-- bench:{}:start -->", db.key());
    let end = format!("<!-- bench:{}:end -->", db.key());
    let block = section(db, body);
    let updated = match (existing.find(&start), existing.find(&end)) {
        (Some(s), Some(e)) if e > s => {
            let mut after = e + end.len();
            if existing[after..].starts_with('\n') {
                after += 1;
            }
            format!("{}{}{}", &existing[..s], block, &existing[after..])
        }
        _ => format!("{}\n\n{block}", existing.trim_end()),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The run

struct Seeded {
    codes: Vec<String>,
    verifier: String,
    secret: String,
}

/// Creates `count` authorization codes of `client` in `session`, straight in the database.
async fn seed_codes(
    store: &Arc<dyn Store>,
    client: &'static str,
    user: &User,
    session: &BrowserSession,
    challenge: &str,
    count: usize,
) -> Result<Vec<String>> {
    let workers = 4;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let store = Arc::clone(store);
        let (user_id, session) = (user.id, session.clone());
        let challenge = challenge.to_owned();
        let n = count / workers + usize::from(w < count % workers);
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::with_capacity(n);
            let actor = Actor::cli();
            let scope = ScopeSet::from_tokens(["openid", "profile", "email"]);
            let client_id = portcullis::domain::client::ClientId::parse(client)?;
            for _ in 0..n {
                let now = OffsetDateTime::now_utc();
                let code = OpaqueToken::generate();
                let record = AuthorizationCodeRecord {
                    code_hash: code.hash(),
                    client_id: client_id.clone(),
                    user_id,
                    session_id: session.id,
                    redirect_uri: REDIRECT_URI.into(),
                    scope: scope.clone(),
                    nonce: Some("bench-nonce".into()),
                    code_challenge: Some(CodeChallenge::from_trusted(challenge.clone())),
                    auth_time: session.auth_time,
                    amr: session.amr.clone(),
                    claims: Default::default(),
                    created_at: now,
                    // Longer than the server's 60 s so that slow runs do not expire them.
                    expires_at: now + time::Duration::hours(1),
                };
                let audit = [
                    AuditEvent::new(now, AuditKind::CodeIssued, Outcome::Success, &actor)
                        .user(user_id)
                        .session(session.id)
                        .client(client),
                ];
                let issued = store
                    .issue_code(
                        &IssueCode {
                            transaction: None,
                            consent: None,
                            code: &record,
                            audit: &audit,
                        },
                        now,
                    )
                    .await?;
                if !issued {
                    bail!("issue_code refused a seeded code");
                }
                codes.push(code.expose().to_owned());
            }
            Ok::<_, anyhow::Error>(codes)
        }));
    }
    let mut codes = Vec::with_capacity(count);
    for t in tasks {
        codes.extend(t.await.context("a seeding task panicked")??);
    }
    Ok(codes)
}

async fn create_user(store: &dyn Store, hasher: &PasswordHasher, username: &str) -> Result<User> {
    let hash = hasher
        .hash(Password::presented(PASSWORD.into()).map_err(|e| anyhow!("{e}"))?)
        .await?;
    let now = OffsetDateTime::now_utc();
    let audit = AuditEvent::new(now, AuditKind::UserCreated, Outcome::Success, &Actor::cli());
    Ok(store
        .create_user(
            &NewUser {
                username: Username::parse(username).map_err(|e| anyhow!("{e}"))?,
                email: Some(format!("{username}@example.com")),
                name: Some("Bench User".into()),
                password_hash: Some(hash),
            },
            now,
            &audit,
        )
        .await?)
}

fn token_request(
    client: &reqwest::Client,
    base: &str,
    seeded: &Seeded,
    code: &str,
) -> reqwest::RequestBuilder {
    code_request(
        client,
        base,
        CLIENT_ID,
        &seeded.secret,
        code,
        &seeded.verifier,
    )
}

/// `POST /token`, `authorization_code` grant with PKCE and `client_secret_basic`.
fn code_request(
    client: &reqwest::Client,
    base: &str,
    client_id: &str,
    secret: &str,
    code: &str,
    verifier: &str,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ])
}

/// Redeems a code through `/token` and returns the response, which must be a 200.
async fn redeem(request: reqwest::RequestBuilder) -> Result<serde_json::Value> {
    let response = request.send().await?;
    if response.status() != StatusCode::OK {
        bail!(
            "redeeming a seeded code answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(response.json().await?)
}

fn json_str(body: &serde_json::Value, field: &str) -> Result<String> {
    body[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no {field} in {body}"))
}

/// Registers a confidential client with `client_secret_basic`; returns its secret.
async fn register_client(
    store: &dyn Store,
    client_id: &str,
    grant_types: &[&str],
    scopes: &[&str],
    first_party: bool,
) -> Result<String> {
    let redirects = grant_types.contains(&"authorization_code");
    let (_, secret) = portcullis::clients::register(
        store,
        Registration {
            client_id: Some(client_id.into()),
            name: format!("Bench {client_id}"),
            kind: ClientKind::Confidential,
            auth_method: None,
            redirect_uris: if redirects {
                vec![REDIRECT_URI.into()]
            } else {
                vec![]
            },
            post_logout_redirect_uris: vec![],
            allowed_origins: vec![],
            grant_types: grant_types.iter().map(|g| (*g).to_owned()).collect(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            first_party,
            refresh_token_delivery: Default::default(),
            id_token_signed_response_alg: None,
            require_pkce: true,
            // The service is the resource server that introspects users' tokens
            // (RFC 7662 §4: it needs the permission).
            introspection: !redirects,
        },
        OffsetDateTime::now_utc(),
        &Actor::cli(),
    )
    .await?;
    Ok(secret
        .ok_or_else(|| anyhow!("a confidential client got no secret"))?
        .expose()
        .to_owned())
}

/// Signs `LOGIN_USER` in through the pages, in a browser of its own: a new session.
async fn sign_in(base: &str) -> Result<()> {
    let browser = browser(base)?;
    let (tx, csrf) = login_form(&browser, base).await?;
    let response = browser
        .post(format!("{base}/login"))
        .form(&[
            ("tx", tx.as_str()),
            ("csrf_token", csrf.as_str()),
            ("username", LOGIN_USER),
            ("password", PASSWORD),
        ])
        .send()
        .await?;
    if response.status() != StatusCode::SEE_OTHER {
        bail!("the seeding sign-in answered {}", response.status());
    }
    Ok(())
}

/// The refresh-token chains of the refresh scenario: each holds the newest token of one
/// family. A request takes a chain's token and puts the successor back, so no chain is
/// used by two requests at once and no token is ever presented twice (a second
/// presentation would be answered from the retry window or detected as reuse).
struct Chains(std::sync::Mutex<VecDeque<String>>);

impl Chains {
    fn take(&self) -> Option<String> {
        self.0.lock().ok()?.pop_front()
    }
    fn put(&self, token: String) {
        if let Ok(mut queue) = self.0.lock() {
            queue.push_back(token);
        }
    }
}

fn refresh_op(
    client: reqwest::Client,
    base: &str,
    secret: &str,
    chains: &Arc<Chains>,
) -> impl Fn(usize) -> OpFuture + Send + Sync + 'static {
    let (url, secret, chains) = (
        format!("{base}/token"),
        Arc::new(secret.to_owned()),
        Arc::clone(chains),
    );
    move |_| {
        let (client, url, secret, chains) = (
            client.clone(),
            url.clone(),
            Arc::clone(&secret),
            Arc::clone(&chains),
        );
        Box::pin(async move {
            let token = chains.take().ok_or("no live refresh token left")?;
            let request = client
                .post(url)
                .basic_auth(REFRESH_CLIENT_ID, Some(&*secret))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)]);
            let (status, body) = exchange_json(request).await?;
            if status == 200 {
                match body["refresh_token"].as_str() {
                    Some(next) if next != token => chains.put(next.to_owned()),
                    _ => return Err("200 without a new refresh token"),
                }
            }
            Ok(status)
        })
    }
}

/// One scenario: optional warm-up, then the measured run, with the server's CPU time (and
/// the database's, on Postgres).
struct Runner {
    pid: u32,
    ticks: f64,
    db: Option<DbProbe>,
}

/// The CPU time of the Postgres backends connected to the bench database: Postgres runs on
/// the same cores, outside the server process. Backends that exit during a run are missed
/// (the server's pool keeps its connections, so none should).
struct DbProbe {
    /// A connection to the admin database, so it is not one of those measured.
    conn: tokio::sync::Mutex<sqlx::PgConnection>,
    database: String,
    ticks: f64,
}

type BackendCpu = BTreeMap<u32, Duration>;

impl DbProbe {
    async fn sample(&self) -> Option<BackendCpu> {
        let mut conn = self.conn.lock().await;
        // pg_stat_activity.pid is int4.
        let pids: Vec<i32> =
            sqlx::query_scalar("select pid from pg_stat_activity where datname = $1")
                .bind(&self.database)
                .fetch_all(&mut *conn)
                .await
                .ok()?;
        Some(
            pids.into_iter()
                .filter_map(|pid| {
                    let pid = u32::try_from(pid).ok()?;
                    Some((pid, proc_cpu(pid, self.ticks)?))
                })
                .collect(),
        )
    }
}

fn backend_cpu_between(
    before: Option<&BackendCpu>,
    after: Option<&BackendCpu>,
) -> Option<Duration> {
    let (before, after) = (before?, after?);
    Some(
        after
            .iter()
            .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or_default()))
            .sum(),
    )
}

impl Runner {
    async fn measure<F, Fut>(
        &self,
        name: &str,
        count: usize,
        concurrency: usize,
        expected: u16,
        op: F,
    ) -> Result<Row>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome1> + Send + 'static,
    {
        eprint!("benches/load: {name} ({count} requests, concurrency {concurrency}) … ");
        let _ = std::io::stderr().flush();
        let db_before = self.db_sample().await;
        let cpu_before = proc_cpu(self.pid, self.ticks);
        let sample = load(count, concurrency, expected, None, op).await?;
        let cpu_after = proc_cpu(self.pid, self.ticks);
        let db_after = self.db_sample().await;
        eprintln!(
            "{:.1} s, {} errors",
            sample.elapsed.as_secs_f64(),
            sample.errors
        );
        Ok(Row {
            scenario: name.into(),
            concurrency,
            server_cpu: cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b)),
            db_cpu: backend_cpu_between(db_before.as_ref(), db_after.as_ref()),
            rss_after_kib: proc_status(self.pid, "VmRSS"),
            sample,
            note: String::new(),
        })
    }

    async fn db_sample(&self) -> Option<BackendCpu> {
        match &self.db {
            Some(probe) => probe.sample().await,
            None => None,
        }
    }
}

async fn run() -> Result<()> {
    let opts = Options::from_env()?;
    let dir = tempfile::Builder::new()
        .prefix("portcullis-bench-")
        .tempdir()
        .context("creating a temp dir")?;
    let mut guard = Guard {
        child: None,
        pg: None,
        dir,
    };

    // The database.
    let db_url = match opts.db {
        Db::Sqlite => format!("sqlite://{}/portcullis.db", guard.dir.path().display()),
        Db::Postgres => {
            use sqlx::Connection as _;
            let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&opts.admin_url)
                .await
                .with_context(|| {
                    format!(
                        "connecting to {} (BENCH_DATABASE_URL)",
                        portcullis::config::redact_url(&opts.admin_url)
                    )
                })?;
            sqlx::query(&format!("create database \"{name}\""))
                .execute(&mut conn)
                .await
                .context("creating the bench database")?;
            let _ = conn.close().await;
            guard.pg = Some((opts.admin_url.clone(), name.clone()));
            let mut url = url::Url::parse(&opts.admin_url).context("BENCH_DATABASE_URL")?;
            url.set_path(&name);
            url.to_string()
        }
    };

    // The master key.
    let key_file = guard.dir.path().join("master.key");
    let key: [u8; 32] = rand::random();
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode(key),
    )?;

    // Start-up, twice: on the fresh database, then restarted on it.
    eprintln!(
        "benches/load: {} backend, server {}",
        opts.db.title(),
        opts.server_bin.display()
    );
    let first_start = start_server(&mut guard, &opts, &db_url, &key_file, free_port()?).await?;
    guard.stop_server();
    let port = free_port()?;
    let restart = start_server(&mut guard, &opts, &db_url, &key_file, port).await?;
    let pid = guard
        .child
        .as_ref()
        .map(Child::id)
        .ok_or_else(|| anyhow!("no server"))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss_kib = proc_status(pid, "VmRSS");
    let idle_threads = proc_status(pid, "Threads");
    eprintln!(
        "benches/load: ready in {} ms (fresh) / {} ms (restart), idle RSS {}",
        ms(first_start),
        ms(restart),
        mib(idle_rss_kib)
    );
    let base = format!("http://127.0.0.1:{port}");

    // Seeding through the library, on the server's database.
    let settings = Settings::defaults()?;
    let mut db_settings = settings.database.clone();
    db_settings.url = db_url.clone();
    db_settings.max_connections = 4;
    db_settings.migrate_on_start = false;
    let store = portcullis::storage::connect(&db_settings).await?;
    let ticks = clock_ticks();
    let db = match &guard.pg {
        Some((admin_url, database)) => {
            use sqlx::Connection as _;
            Some(DbProbe {
                conn: tokio::sync::Mutex::new(sqlx::PgConnection::connect(admin_url).await?),
                database: database.clone(),
                ticks,
            })
        }
        None => None,
    };
    let runner = Runner { pid, ticks, db };
    let result = exercise(&opts, &store, &settings, &base, &runner, &key_file).await;
    store.close().await;
    let (rows, mut process) = result?;
    process.first_start = first_start;
    process.restart = restart;
    process.idle_rss_kib = idle_rss_kib;
    process.idle_threads = idle_threads;

    let body = report(&opts, &process, &rows);
    println!("\n{body}");
    if let Some(path) = &opts.write {
        write_doc(path, opts.db, &body)?;
        eprintln!(
            "benches/load: wrote the {} section of {}",
            opts.db.key(),
            path.display()
        );
    }
    drop(guard);
    Ok(())
}

async fn exercise(
    opts: &Options,
    store: &Arc<dyn Store>,
    settings: &Settings,
    base: &str,
    runner: &Runner,
    key_file: &Path,
) -> Result<(Vec<Row>, ProcessFigures)> {
    let pid = runner.pid;
    // The web app of the authorization_code scenarios (no refresh grant, so redeeming a
    // code creates no refresh family), the app of the refresh scenario, and a service
    // (resource server) for client_credentials and introspection.
    let secret = register_client(
        store.as_ref(),
        CLIENT_ID,
        &["authorization_code"],
        &[],
        true,
    )
    .await?;
    let refresh_secret = register_client(
        store.as_ref(),
        REFRESH_CLIENT_ID,
        &["authorization_code", "refresh_token"],
        &[],
        true,
    )
    .await?;
    let service_secret = Arc::new(
        register_client(
            store.as_ref(),
            SERVICE_CLIENT_ID,
            &["client_credentials"],
            &[API_SCOPE],
            false,
        )
        .await?,
    );
    let hasher = PasswordHasher::new(&settings.password)?;
    let user = create_user(store.as_ref(), &hasher, LOGIN_USER).await?;
    create_user(store.as_ref(), &hasher, FLOOD_USER).await?;

    // One real session, signed in through the pages; every seeded code of the web app
    // points at it.
    sign_in(base).await?;
    let session = store
        .list_sessions(user.id, OffsetDateTime::now_utc())
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the seeding sign-in created no session"))?;

    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = portcullis::domain::pkce::challenge_for_verifier(&verifier)
        .map_err(|e| anyhow!("{e}"))?
        .as_str()
        .to_owned();
    let wanted = 2 + TOKEN_WARMUP + opts.token_requests + 2 * SIDE_TOKEN_REQUESTS;
    eprint!("benches/load: seeding {wanted} authorization codes … ");
    let t = Instant::now();
    let codes = seed_codes(store, CLIENT_ID, &user, &session, &challenge, wanted).await?;
    eprintln!("{:.1} s", t.elapsed().as_secs_f64());
    let seeded = Arc::new(Seeded {
        codes,
        verifier,
        secret,
    });
    // Code ranges: [0] userinfo token, [1] introspected token, then warm-up, main run,
    // idle side run, flood run.
    let introspect_at = 1;
    let warm_at = 2;
    let main_at = warm_at + TOKEN_WARMUP;
    let idle_at = main_at + opts.token_requests;
    let flood_at = idle_at + SIDE_TOKEN_REQUESTS;

    let c = opts.concurrency;
    let mut rows = Vec::new();

    // Read-only endpoints.
    for path in ["/.well-known/openid-configuration", "/jwks.json"] {
        let client = http_client(c)?;
        let url = format!("{base}{path}");
        let warm = {
            let (client, url) = (client.clone(), url.clone());
            move |_| exchange(client.get(&url))
        };
        load(GET_WARMUP, c, 200, None, warm).await?;
        let op = move |_| exchange(client.get(&url));
        rows.push(
            runner
                .measure(&format!("`GET {path}`"), opts.requests, c, 200, op)
                .await?,
        );
    }

    // /userinfo with one access token from a redeemed code.
    {
        let client = http_client(c)?;
        let body = redeem(token_request(&client, base, &seeded, &seeded.codes[0])).await?;
        let token = json_str(&body, "access_token")?;
        let url = format!("{base}/userinfo");
        let warm = {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            move |_| exchange(client.get(&url).bearer_auth(&token))
        };
        load(GET_WARMUP, c, 200, None, warm).await?;
        let op = move |_| exchange(client.get(&url).bearer_auth(&token));
        rows.push(
            runner
                .measure("`GET /userinfo`", opts.requests, c, 200, op)
                .await?,
        );
    }

    // /token, every request a distinct code.
    let token_op = |client: reqwest::Client, offset: usize| {
        let (seeded, base) = (Arc::clone(&seeded), base.to_owned());
        move |i: usize| {
            let request = token_request(&client, &base, &seeded, &seeded.codes[offset + i]);
            exchange(request)
        }
    };
    {
        let client = http_client(c)?;
        load(
            TOKEN_WARMUP,
            c,
            200,
            None,
            token_op(client.clone(), warm_at),
        )
        .await?;
        rows.push(
            runner
                .measure(
                    "`POST /token` (authorization_code)",
                    opts.token_requests,
                    c,
                    200,
                    token_op(client, main_at),
                )
                .await?,
        );
    }

    // /token, refresh_token grant: one rotation chain per concurrent worker, each in a
    // browser session of its own (as different users' apps would be: refreshes of one
    // session serialise on its row, which each session-bound refresh updates). The chains
    // start from codes redeemed through /token; the warm-up and the run continue them.
    {
        eprint!("benches/load: starting {c} refresh chains (sign-ins, codes, redemptions) … ");
        let t = Instant::now();
        for _ in 0..c {
            sign_in(base).await?;
        }
        let sessions: Vec<BrowserSession> = store
            .list_sessions(user.id, OffsetDateTime::now_utc())
            .await?
            .into_iter()
            .filter(|s| s.id != session.id)
            .collect();
        if sessions.len() < c {
            bail!("{c} sign-ins made only {} new sessions", sessions.len());
        }
        let client = http_client(c)?;
        let mut tokens = VecDeque::with_capacity(c);
        for chain_session in &sessions[..c] {
            let codes = seed_codes(
                store,
                REFRESH_CLIENT_ID,
                &user,
                chain_session,
                &challenge,
                1,
            )
            .await?;
            let code = codes.first().ok_or_else(|| anyhow!("no code was seeded"))?;
            let request = code_request(
                &client,
                base,
                REFRESH_CLIENT_ID,
                &refresh_secret,
                code,
                &seeded.verifier,
            );
            tokens.push_back(json_str(&redeem(request).await?, "refresh_token")?);
        }
        eprintln!("{:.1} s", t.elapsed().as_secs_f64());
        let chains = Arc::new(Chains(std::sync::Mutex::new(tokens)));
        load(
            TOKEN_WARMUP,
            c,
            200,
            None,
            refresh_op(client.clone(), base, &refresh_secret, &chains),
        )
        .await?;
        let mut row = runner
            .measure(
                "`POST /token` (refresh_token)",
                opts.token_requests,
                c,
                200,
                refresh_op(client, base, &refresh_secret, &chains),
            )
            .await?;
        row.note = format!("{c} rotation chains, every token presented once");
        rows.push(row);
    }

    // /token, client_credentials grant: a service asks for a token for itself.
    {
        let client = http_client(c)?;
        let url = format!("{base}/token");
        let op = {
            let secret = Arc::clone(&service_secret);
            move |_| {
                exchange(
                    client
                        .post(&url)
                        .basic_auth(SERVICE_CLIENT_ID, Some(&*secret))
                        .form(&[("grant_type", "client_credentials"), ("scope", API_SCOPE)]),
                )
            }
        };
        let op = Arc::new(op);
        let warm = {
            let op = Arc::clone(&op);
            move |i| op(i)
        };
        load(TOKEN_WARMUP, c, 200, None, warm).await?;
        rows.push(
            runner
                .measure(
                    "`POST /token` (client_credentials)",
                    opts.token_requests,
                    c,
                    200,
                    move |i| op(i),
                )
                .await?,
        );
    }

    // /introspect: the service asks about a user's live access token (redeemed just now,
    // so it cannot expire during the run); every answer must say `active: true`.
    {
        let client = http_client(c)?;
        let body = redeem(token_request(
            &client,
            base,
            &seeded,
            &seeded.codes[introspect_at],
        ))
        .await?;
        let token = Arc::new(json_str(&body, "access_token")?);
        let url = Arc::new(format!("{base}/introspect"));
        let op = move |_| {
            let (client, url, token, secret) = (
                client.clone(),
                Arc::clone(&url),
                Arc::clone(&token),
                Arc::clone(&service_secret),
            );
            async move {
                let request = client
                    .post(url.as_str())
                    .basic_auth(SERVICE_CLIENT_ID, Some(&*secret))
                    .form(&[
                        ("token", token.as_str()),
                        ("token_type_hint", "access_token"),
                    ]);
                let (status, body) = exchange_json(request).await?;
                if status == 200 && body["active"] != serde_json::Value::Bool(true) {
                    return Err("200 with active: false");
                }
                Ok(status)
            }
        };
        let op = Arc::new(op);
        let warm = {
            let op = Arc::clone(&op);
            move |i| op(i)
        };
        load(GET_WARMUP, c, 200, None, warm).await?;
        let mut row = runner
            .measure(
                "`POST /introspect` (a user's access token)",
                opts.requests,
                c,
                200,
                move |i| op(i),
            )
            .await?;
        row.note = "every answer checked for `active: true`".into();
        rows.push(row);
    }

    // Sign-in with a wrong password: argon2id on the bounded pool. Failed attempts do not
    // consume the form, so every task reuses one.
    let login_op = |username: &'static str| -> Result<_> {
        let client = browser(base)?;
        let base = base.to_owned();
        Ok(async move {
            let (tx, csrf) = login_form(&client, &base).await?;
            let form = Arc::new([
                ("tx", tx),
                ("csrf_token", csrf),
                ("username", username.to_owned()),
                ("password", WRONG_PASSWORD.to_owned()),
            ]);
            Ok::<_, anyhow::Error>(move |_: usize| {
                exchange(client.post(format!("{base}/login")).form(&*form))
            })
        })
    };
    {
        let op = login_op(LOGIN_USER)?.await?;
        let op = Arc::new(op);
        let warm = {
            let op = Arc::clone(&op);
            move |i| op(i)
        };
        load(LOGIN_WARMUP, LOGIN_CONCURRENCY, 200, None, warm).await?;
        let mut row = runner
            .measure(
                "`POST /login` (wrong password)",
                LOGIN_REQUESTS,
                LOGIN_CONCURRENCY,
                200,
                move |i| op(i),
            )
            .await?;
        row.note = "200 = the form again with \"Incorrect username or password\"".into();
        rows.push(row);
    }

    // "Token requests keep their latency": /token at concurrency 4 alone, then while 8
    // concurrent sign-ins keep the argon2 pool saturated.
    {
        let client = http_client(SIDE_TOKEN_CONCURRENCY)?;
        let mut row = runner
            .measure(
                "`POST /token`, idle server",
                SIDE_TOKEN_REQUESTS,
                SIDE_TOKEN_CONCURRENCY,
                200,
                token_op(client.clone(), idle_at),
            )
            .await?;
        row.note = "baseline for the next row".into();
        rows.push(row);

        let flood_op = login_op(FLOOD_USER)?.await?;
        let stop = Arc::new(AtomicBool::new(false));
        eprintln!("benches/load: login flood (concurrency {FLOOD_CONCURRENCY}) started");
        let flood_db_before = runner.db_sample().await;
        let flood_cpu_before = proc_cpu(pid, runner.ticks);
        let flood = tokio::spawn(load(
            FLOOD_MAX,
            FLOOD_CONCURRENCY,
            200,
            Some(Arc::clone(&stop)),
            flood_op,
        ));
        // Let the pool fill and the queue form before measuring.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let measured = runner
            .measure(
                "`POST /token` during a `POST /login` flood",
                SIDE_TOKEN_REQUESTS,
                SIDE_TOKEN_CONCURRENCY,
                200,
                token_op(client, flood_at),
            )
            .await;
        stop.store(true, Ordering::Relaxed);
        let flood_sample = flood.await.context("the flood panicked")??;
        let flood_cpu_after = proc_cpu(pid, runner.ticks);
        let flood_db_after = runner.db_sample().await;
        let mut row = measured?;
        // The server's CPU time during this row is mostly the flood's argon2.
        row.server_cpu = None;
        row.db_cpu = None;
        let flood_n = flood_sample.latencies.len();
        row.note = format!(
            "{flood_n} sign-ins ran alongside{}",
            if flood_n >= FLOOD_MAX {
                " (flood cap reached before the end!)"
            } else {
                ""
            }
        );
        rows.push(row);
        rows.push(Row {
            scenario: "`POST /login` flood (the load of the previous row)".into(),
            concurrency: FLOOD_CONCURRENCY,
            server_cpu: flood_cpu_before
                .zip(flood_cpu_after)
                .map(|(b, a)| a.saturating_sub(b)),
            db_cpu: backend_cpu_between(flood_db_before.as_ref(), flood_db_after.as_ref()),
            rss_after_kib: proc_status(pid, "VmRSS"),
            sample: flood_sample,
            note: "CPU columns include the concurrent /token requests".into(),
        });
    }

    let after_rss_kib = proc_status(pid, "VmRSS");
    let peak_rss_kib = proc_status(pid, "VmHWM");
    let after_threads = proc_status(pid, "Threads");
    eprint!("benches/load: RS256 and AES-GCM costs in this process … ");
    let crypto = crypto_costs(store, key_file, base).await?;
    eprintln!("done");
    let process = ProcessFigures {
        first_start: Duration::ZERO,
        restart: Duration::ZERO,
        idle_rss_kib: None,
        after_rss_kib,
        peak_rss_kib,
        idle_threads: None,
        after_threads,
        crypto,
    };
    Ok((rows, process))
}
