//! The Postgres store: timestamptz timestamps, native uuids, jsonb.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use time::OffsetDateTime;

use super::{Backend, StoreError};
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

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(&settings.url)?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn close_pools(&self) {
        self.pool.close().await;
    }
}

super::sql::sql_store!(PgStore, Postgres, Backend::Postgres);
