//! Load generation and timing: `concurrency` tasks issuing requests back to back,
//! their latencies, and the server's (and Postgres's) CPU time around each run, read
//! from /proc.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use portcullis::clock::SystemClock;
use portcullis::keys::{Expectations, KeyRing, MasterKey};
use portcullis::storage::Store;
use time::OffsetDateTime;

use crate::common::{CLIENT_ID, CRYPTO_ROUNDS, CryptoCosts, Row, Sample};

/// What one request produced: its status, or why it has none worth counting (a transport
/// error, or a response the scenario's own check refused).
pub type Outcome1 = Result<u16, &'static str>;

const TRANSPORT_ERROR: &str = "transport error";

/// A request of a scenario whose closure is built by a helper function.
pub type OpFuture = std::pin::Pin<Box<dyn Future<Output = Outcome1> + Send>>;

/// Runs up to `count` requests (`op(i)` for i in 0..count) on `concurrency` tasks, each
/// issuing its next request as soon as the previous one answered; stops early when `stop`
/// is set.
pub async fn load<F, Fut>(
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
pub async fn exchange(request: reqwest::RequestBuilder) -> Outcome1 {
    let response = request.send().await.map_err(|_| TRANSPORT_ERROR)?;
    let status = response.status().as_u16();
    response.bytes().await.map_err(|_| TRANSPORT_ERROR)?;
    Ok(status)
}

/// Like `exchange`, and parses the body as JSON (`/token` and `/introspect` answer JSON,
/// errors included).
pub async fn exchange_json(
    request: reqwest::RequestBuilder,
) -> Result<(u16, serde_json::Value), &'static str> {
    let response = request.send().await.map_err(|_| TRANSPORT_ERROR)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|_| TRANSPORT_ERROR)?;
    let json = serde_json::from_slice(&body).map_err(|_| "a body that is not JSON")?;
    Ok((status, json))
}

pub fn http_client(concurrency: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// One scenario: optional warm-up, then the measured run, with the server's CPU time (and
/// the database's, on Postgres).
pub struct Runner {
    pub pid: u32,
    pub ticks: f64,
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

pub type BackendCpu = BTreeMap<u32, Duration>;

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

pub fn backend_cpu_between(
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
    /// A runner for the server `pid`, probing the Postgres backends of `pg` (admin URL,
    /// database name) when the run is on Postgres.
    pub async fn new(pid: u32, ticks: f64, pg: Option<&(String, String)>) -> Result<Self> {
        let db = match pg {
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
        Ok(Self { pid, ticks, db })
    }

    pub async fn measure<F, Fut>(
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

    pub async fn db_sample(&self) -> Option<BackendCpu> {
        match &self.db {
            Some(probe) => probe.sample().await,
            None => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// /proc readings of the child

/// The number in a field of /proc/<pid>/status (`VmRSS` and `VmHWM` are in KiB).
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// User + system CPU time of a process so far.
pub fn proc_cpu(pid: u32, ticks_per_sec: f64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / ticks_per_sec))
}

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// What one cryptographic operation of the token endpoints costs, measured in the load
/// process with the server's own RS256 key (loaded from the database with the master key):
/// the median of `CRYPTO_ROUNDS` sequential calls, taken once the server is idle.
pub async fn crypto_costs(
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
