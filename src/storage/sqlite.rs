//! The embedded SQLite store: WAL journal, one writer connection (writes are serialised,
//! so concurrent requests never see "database is locked") and a pool of readers.
//! Timestamps are integer Unix seconds, uuids 16-byte blobs.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use time::OffsetDateTime;

use super::StoreError;
use crate::config::DatabaseSettings;

type Ts = i64;

fn ts(t: OffsetDateTime) -> Ts {
    t.unix_timestamp()
}

fn from_ts(t: Ts) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Row locking for read-then-write checks; SQLite needs none (writes are serialised).
const LOCK_ROW: &str = "";
const LOCK_SHARE: &str = "";

/// The migrations this build carries.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Whether sqlx's migration table exists (a database never migrated has none).
const HAS_MIGRATIONS_TABLE: &str = "select exists (select 1 from sqlite_master \
     where type = 'table' and name = '_sqlx_migrations')";

/// No notifications: SQLite serves a single node.
const NOTIFY_KEYS: Option<&str> = None;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Within one process writes are serialised by the single writer connection;
            // this only waits for another process (the CLI next to a running server),
            // whose transactions are short, even on a loaded machine.
            .busy_timeout(Duration::from_secs(15));
        let file = options.get_filename().to_path_buf();
        if let Some(parent) = file.parent()
            && !parent.as_os_str().is_empty()
            && !parent.exists()
        {
            create_private_dir(parent)
                .map_err(|e| StoreError::Open(format!("creating {}: {e}", parent.display())))?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.connect_timeout.max(Duration::from_secs(30)))
            .connect_with(options.clone())
            .await?;
        // SECURITY: the file holds password hashes: readable by the owner only.
        restrict_to_owner(&file)
            .map_err(|e| StoreError::Open(format!("securing {}: {e}", file.display())))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { writer, reader })
    }

    /// For inspection (`portcullis doctor`): opens an existing file read-only, creates
    /// nothing, changes no journal mode and no file permission.
    pub async fn connect_read_only(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(false)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.connect_timeout)
            .connect_with(options)
            .await?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
        })
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    async fn close_pools(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn key_listener(&self) -> Result<Option<super::KeyChangeListener>, StoreError> {
        Ok(None)
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn restrict_to_owner(file: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if file.exists() {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_to_owner(_: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

super::sql::sql_store!(SqliteStore, Sqlite, Backend::Sqlite);
