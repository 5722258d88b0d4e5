//! The Postgres store: timestamptz timestamps, native uuids, jsonb.

use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use time::OffsetDateTime;

use super::StoreError;
use crate::config::DatabaseSettings;

type Ts = OffsetDateTime;

fn ts(t: OffsetDateTime) -> Ts {
    t
}

fn from_ts(t: Ts) -> OffsetDateTime {
    t
}

/// Row locking for read-then-write checks inside a transaction.
const LOCK_ROW: &str = " for update";
/// A shared row lock: concurrent readers proceed, a concurrent revocation waits.
const LOCK_SHARE: &str = " for share";

/// The migrations this build carries.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Whether sqlx's migration table exists (a database never migrated has none).
const HAS_MIGRATIONS_TABLE: &str = "select to_regclass('_sqlx_migrations') is not null";

/// The channel signing-key changes are announced on.
const KEYS_CHANNEL: &str = "portcullis_keys";

/// Sent in the transaction of every change to `signing_keys` ($1: what changed); Postgres
/// delivers it to every listening instance when the transaction commits.
const NOTIFY_KEYS: Option<&str> = Some("select pg_notify('portcullis_keys', $1)");

pub struct PgStore {
    pool: PgPool,
    options: PgConnectOptions,
    connect_timeout: std::time::Duration,
}

/// `LISTEN portcullis_keys` on a connection of its own.
pub struct KeyChangeListener {
    listener: PgListener,
}

impl KeyChangeListener {
    /// Waits for the next notification: `Ok(true)` when the keys changed, `Ok(false)` when
    /// the connection was lost and re-established (notifications sent meanwhile are lost).
    pub async fn changed(&mut self) -> Result<bool, StoreError> {
        Ok(self.listener.try_recv().await?.is_some())
    }
}

impl PgStore {
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(&settings.url)?;
        Self::open(settings, options, settings.max_connections).await
    }

    /// For inspection (`portcullis doctor`): every transaction read-only, a statement
    /// timeout, one connection.
    pub async fn connect_read_only(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(&settings.url)?.options([
            ("default_transaction_read_only", "on"),
            ("statement_timeout", "10s"),
        ]);
        Self::open(settings, options, 1).await
    }

    async fn open(
        settings: &DatabaseSettings,
        options: PgConnectOptions,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(settings.connect_timeout)
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            pool,
            options,
            connect_timeout: settings.connect_timeout,
        })
    }

    async fn key_listener(&self) -> Result<Option<KeyChangeListener>, StoreError> {
        // A pool of one long-lived connection, apart from the request pool.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(self.connect_timeout)
            .connect_with(self.options.clone())
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(KEYS_CHANNEL).await?;
        Ok(Some(KeyChangeListener { listener }))
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn close_pools(&self) {
        self.pool.close().await;
    }
}

super::sql::sql_store!(PgStore, Postgres, Backend::Postgres);
