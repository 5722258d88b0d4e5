//! The figures of a run and their output: the markdown tables printed on stdout and,
//! with `BENCH_WRITE`, this backend's section of the benchmarks document.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use time::OffsetDateTime;

use crate::common::{CRYPTO_ROUNDS, CryptoCosts, Row};
use crate::options::{Db, Options};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn ms(d: Duration) -> String {
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

pub struct ProcessFigures {
    pub first_start: Duration,
    pub restart: Duration,
    pub idle_rss_kib: Option<u64>,
    pub after_rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    pub idle_threads: Option<u64>,
    pub after_threads: Option<u64>,
    pub crypto: CryptoCosts,
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

pub fn report(opts: &Options, process: &ProcessFigures, rows: &[Row]) -> String {
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
`benches/load/`. It starts the release `portcullis` binary as a child process on
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

pub fn write_doc(path: &Path, db: Db, body: &str) -> Result<()> {
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

pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}
