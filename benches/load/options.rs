//! What a run is asked for: the `BENCH_*` environment variables.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    pub fn key(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            Db::Sqlite => "SQLite",
            Db::Postgres => "Postgres",
        }
    }
}

pub struct Options {
    pub db: Db,
    pub admin_url: String,
    pub concurrency: usize,
    pub requests: usize,
    pub token_requests: usize,
    pub write: Option<PathBuf>,
    pub server_bin: PathBuf,
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
    pub fn from_env() -> Result<Self> {
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
