//! The server child process, its database and temp dir: always cleaned up (Drop).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use reqwest::StatusCode;

use crate::options::{Db, Options};

pub struct Guard {
    pub child: Option<Child>,
    /// (admin URL, database name) of a Postgres database to drop.
    pub pg: Option<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl Guard {
    /// A temp dir for the run; nothing started yet.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-bench-")
            .tempdir()
            .context("creating a temp dir")?;
        Ok(Self {
            child: None,
            pg: None,
            dir,
        })
    }

    /// The server's database: a file in the temp dir, or a fresh Postgres database
    /// (dropped with the guard). Returns its URL.
    pub async fn create_database(&mut self, opts: &Options) -> Result<String> {
        match opts.db {
            Db::Sqlite => Ok(format!(
                "sqlite://{}/portcullis.db",
                self.dir.path().display()
            )),
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
                self.pg = Some((opts.admin_url.clone(), name.clone()));
                let mut url = url::Url::parse(&opts.admin_url).context("BENCH_DATABASE_URL")?;
                url.set_path(&name);
                Ok(url.to_string())
            }
        }
    }

    /// A random master key in the temp dir; returns its path.
    pub fn write_master_key(&self) -> Result<PathBuf> {
        let key_file = self.dir.path().join("master.key");
        let key: [u8; 32] = rand::random();
        std::fs::write(
            &key_file,
            base64::engine::general_purpose::STANDARD.encode(key),
        )?;
        Ok(key_file)
    }

    pub fn stop_server(&mut self) {
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

pub fn free_port() -> Result<u16> {
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
pub async fn start_server(
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
