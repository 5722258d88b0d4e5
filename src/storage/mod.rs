//! The storage layer: every query Portcullis makes, behind one trait per aggregate (users,
//! sessions and sign-in, clients, grants, signing keys, audit, housekeeping) with a
//! Postgres and a SQLite implementation chosen by the database URL's scheme. SQL lives
//! only here (`sql/`, each statement written once for both backends). Storage executes
//! the decisions of the layers above atomically; it does not make them.

mod audit;
mod clients;
mod factors;
mod grants;
mod housekeeping;
mod postgres;
mod sessions;
mod signing_keys;
mod sql;
mod sqlite;
mod users;

use std::sync::Arc;

use crate::config::DatabaseSettings;

pub use audit::AuditStore;
pub use clients::ClientStore;
pub use factors::{
    Ceremony, FactorConfirmation, FactorKind, FactorRecord, FactorStore, PasskeyRecord,
    RecoveryCodes, ReencryptedSecret,
};
pub use grants::{
    AuthorizationCodeRecord, CodeBinding, CodeRedemption, GrantStore, IssueCode, NewRefreshFamily,
    Redemption, RefreshRotation, RefreshTokenRecord,
};
pub use housekeeping::{Backend, HousekeepingStore, PoolStats, PurgeCutoffs, TABLES, TableSize};
pub use postgres::{KeyChangeListener, PgStore};
pub use sessions::{
    CompletedLogin, CompletedStepUp, LoginTransaction, NewSession, Reservation, SessionStore,
    VerifiedCredential,
};
pub use signing_keys::{KeyRetirement, ReencryptedKey, Retired, SigningKeyRecord, SigningKeyStore};
pub use sqlite::SqliteStore;
pub use users::{PasswordChange, UserStore};

/// Everything the server keeps, one aggregate per supertrait. Callers hold an
/// `Arc<dyn Store>`; a function that needs one aggregate only can take that trait.
pub trait Store:
    UserStore
    + SessionStore
    + ClientStore
    + FactorStore
    + GrantStore
    + SigningKeyStore
    + AuditStore
    + HousekeepingStore
    + 'static
{
}

impl<T> Store for T where
    T: UserStore
        + SessionStore
        + ClientStore
        + FactorStore
        + GrantStore
        + SigningKeyStore
        + AuditStore
        + HousekeepingStore
        + 'static
{
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated (e.g. the username is taken).
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("could not open the database: {0}")]
    Open(String),
}

/// What a client is told to wait before retrying while the database is unreachable.
pub const OUTAGE_RETRY_AFTER_SECS: u64 = 5;

impl StoreError {
    /// Whether the database could not be reached or was not taking work (down,
    /// restarting, out of connections, or locked by another writer) — an outage the
    /// client may retry after, as opposed to a bug. Answered as 503 with `Retry-After`.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) => sqlx_unavailable(e),
            // Opening the database is start-up: a wrong path or permission is a bug of the
            // deployment, not an outage; so is a failed migration.
            Self::Conflict(_) | Self::Migrate(_) | Self::Open(_) => false,
        }
    }
}

/// Only failures a retry can cure. A crashed SQLite worker, a protocol violation or a
/// lock conflict on one connection are bugs and stay 500s.
fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        // No connection within `database.connect_timeout`, the pool closing at shutdown,
        // or the connection broke.
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                // PostgreSQL Appendix A: class 08 (connection exception) but 08P01
                // (protocol_violation), 53300 too_many_connections, 57P01 admin_shutdown,
                // 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up).
                let code = pg.code();
                (code.starts_with("08") && code != "08P01")
                    || matches!(code, "53300" | "57P01" | "57P02" | "57P03")
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY (5) and its extended codes: another process held the write
                // lock for the whole busy timeout.
                db.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| c & 0xff == 5)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// A store that only reads (`portcullis doctor`): never creates, migrates or alters the
/// database or its files.
pub async fn connect_read_only(settings: &DatabaseSettings) -> Result<Arc<dyn Store>, StoreError> {
    if settings.url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect_read_only(settings).await?))
    } else {
        Ok(Arc::new(PgStore::connect_read_only(settings).await?))
    }
}

/// Opens the store named by `database.url`: `postgres://…` or `sqlite:…`.
pub async fn connect(settings: &DatabaseSettings) -> Result<Arc<dyn Store>, StoreError> {
    if settings.url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(settings).await?))
    } else {
        Ok(Arc::new(PgStore::connect(settings).await?))
    }
}

#[cfg(test)]
mod outage_tests {
    use super::StoreError;

    #[test]
    fn only_failures_a_retry_can_cure_are_outages() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(StoreError::Database(sqlx::Error::PoolClosed).is_unavailable());
        assert!(StoreError::Database(sqlx::Error::Io(io)).is_unavailable());
        assert!(!StoreError::Database(sqlx::Error::WorkerCrashed).is_unavailable());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::Database(sqlx::Error::Protocol("x".into())).is_unavailable());
        assert!(!StoreError::Conflict("user").is_unavailable());
        assert!(!StoreError::Open("permission denied".into()).is_unavailable());
    }
}
