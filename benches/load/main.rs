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
//!
//! `server` starts and stops the child, `seed` fills its database, `scenarios` says what
//! each scenario sends, `driver` generates the load and times it, `report` prints the
//! tables; the browser and `/token` requests are the API tests' own (`flow`). `common`
//! holds what several of them share (the bench's client, password and redirect URI, the
//! measured samples and rows), so that they import each other one way only: `common`,
//! `options` and `flow` import none of the others, `driver` and `seed` only `common`,
//! `server` only `options`, `report` those two, `scenarios` `common`, `options`, `flow`,
//! `driver`, `seed` and `report`, and `main` what it runs.

mod common;
mod driver;
#[path = "../../tests/api/helpers/flow.rs"]
mod flow;
mod options;
mod report;
mod scenarios;
mod seed;
mod server;

use std::process::{Child, ExitCode};
use std::time::Duration;

use anyhow::{Result, anyhow};
use portcullis::config::Settings;

use crate::driver::{Runner, clock_ticks, proc_status};
use crate::options::Options;
use crate::report::{mib, ms, report, write_doc};
use crate::scenarios::exercise;
use crate::server::{Guard, free_port, start_server};

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

async fn run() -> Result<()> {
    let opts = Options::from_env()?;
    let mut guard = Guard::new()?;
    let db_url = guard.create_database(&opts).await?;
    let key_file = guard.write_master_key()?;

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
    let runner = Runner::new(pid, clock_ticks(), guard.pg.as_ref()).await?;
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
