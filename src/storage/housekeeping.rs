//! The database itself: backend, migrations, health, pool statistics, table sizes, and
//! purging expired rows.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;

/// Connections of a store's pools.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    pub open: u32,
    pub idle: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The size of one table (see `Store::table_sizes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSize {
    pub table: &'static str,
    pub rows: u64,
    /// Rows added since the instant asked about, where the table records when.
    pub recent: Option<u64>,
}

/// Every table, and the column saying when a row was added (if any).
pub const TABLES: &[(&str, Option<&str>)] = &[
    ("users", Some("created_at")),
    ("clients", Some("created_at")),
    ("browser_sessions", Some("created_at")),
    ("login_transactions", Some("created_at")),
    ("login_throttles", None),
    ("login_attempt_leases", None),
    ("authorization_codes", Some("created_at")),
    ("consents", None),
    ("refresh_families", Some("created_at")),
    ("refresh_tokens", Some("issued_at")),
    ("revoked_access_tokens", None),
    ("signing_keys", Some("created_at")),
    ("audit_events", Some("at")),
];

/// Rows older than these instants are purged.
#[derive(Debug, Clone, Copy)]
pub struct PurgeCutoffs {
    pub now: OffsetDateTime,
    /// Sessions and refresh families that ended (revoked or expired) before this go.
    /// SECURITY: it must lie further back than the longest access-token lifetime: an
    /// access token carrying `sid` is refused while its session row says it was revoked,
    /// so the row must outlive every token issued in it (and a session that merely
    /// expired must stay revocable by "sign out everywhere" until then too).
    pub ended_before: OffsetDateTime,
    /// Throttle rows whose last failure is older, and which are not locked, go.
    pub throttle_before: OffsetDateTime,
    /// Audit events older than this go (`housekeeping.audit_retention`); none: kept.
    pub audit_before: Option<OffsetDateTime>,
}

/// Migrations, health and housekeeping.
#[async_trait]
pub trait HousekeepingStore: Send + Sync {
    fn backend(&self) -> Backend;
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Open and idle connections of the pools (metrics).
    fn pool_stats(&self) -> PoolStats;
    /// Versions of the migrations this build carries that the database lacks.
    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    async fn close(&self);
    /// Rows per table, and for the tables that grow with traffic, how many rows were
    /// added since `since` (`portcullis doctor`).
    async fn table_sizes(&self, since: OffsetDateTime) -> Result<Vec<TableSize>, StoreError>;
    /// Deletes up to `batch` expired rows per table; returns how many went.
    async fn purge_expired(&self, cutoffs: &PurgeCutoffs, batch: u32) -> Result<u64, StoreError>;
}
