//! The `Store`: every query Portcullis makes, behind one interface with a Postgres and a
//! SQLite implementation chosen by the database URL's scheme. SQL lives only here.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditQuery, AuditRecord, AuditSearch};
use crate::config::DatabaseSettings;
use crate::domain::claims::RequestedClaims;
use crate::domain::client::{Client, ClientId};
use crate::domain::refresh::FamilyId;
use crate::domain::scope::ScopeSet;
use crate::domain::secret::TokenHash;
use crate::domain::session::{BrowserSession, SessionId};
use crate::domain::throttle::{LeaseId, ThrottlePolicy, ThrottleState};
use crate::domain::user::{NewUser, PasswordHash, User, UserId, UserProfile, Username};

pub use postgres::{KeyChangeListener, PgStore};
pub use sqlite::SqliteStore;

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

/// A sign-in form waiting to be submitted.
#[derive(Debug, Clone)]
pub struct LoginTransaction {
    pub id_hash: TokenHash,
    pub binding_hash: TokenHash,
    /// A server-chosen local path; never taken from a request.
    pub return_to: String,
    pub request: Option<serde_json::Value>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// The session a sign-in through this transaction created.
    pub session_id: Option<SessionId>,
}

/// An authorization code as stored (RFC 6749 §4.1.2: short-lived, single use, bound to
/// the client and redirect URI; RFC 7636: bound to the PKCE challenge).
#[derive(Debug, Clone)]
pub struct AuthorizationCodeRecord {
    pub code_hash: TokenHash,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub session_id: SessionId,
    pub redirect_uri: String,
    pub scope: ScopeSet,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub auth_time: OffsetDateTime,
    pub amr: Vec<String>,
    /// Claims released beyond the scope (OpenID Connect Core §5.5), already consented.
    pub claims: RequestedClaims,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Everything answering an authorization request changes, in one transaction.
#[derive(Debug)]
pub struct IssueCode<'a> {
    /// The pending transaction this answers; it can be answered once.
    pub transaction: Option<TokenHash>,
    /// Scopes the user just consented to (merged into what they granted before).
    pub consent: Option<&'a ScopeSet>,
    pub code: &'a AuthorizationCodeRecord,
    pub audit: &'a [AuditEvent],
}

/// A code presented at the token endpoint, with what it must be bound to.
#[derive(Debug)]
pub struct CodeRedemption<'a> {
    pub code_hash: TokenHash,
    pub client_id: &'a ClientId,
    pub redirect_uri: &'a str,
    /// The S256 challenge computed from the presented code_verifier.
    pub code_challenge: &'a str,
    /// The id and expiry of the access token about to be issued, so that a later reuse
    /// of the code can revoke it.
    pub access_token_jti: uuid::Uuid,
    pub access_token_expires_at: OffsetDateTime,
    /// A refresh token to issue with the code's tokens, as the first of a new family.
    pub refresh: Option<NewRefreshFamily>,
    pub audit_issued: &'a AuditEvent,
    pub audit_reused: &'a AuditEvent,
}

/// The first refresh token of a family created when a code is redeemed; the family takes
/// its user, scope, auth_time, amr and requested claims from the code. Bound to the code's browser session
/// unless the scope holds `offline_access` (OpenID Connect Core §11).
#[derive(Debug, Clone)]
pub struct NewRefreshFamily {
    pub family_id: FamilyId,
    pub token_hash: TokenHash,
    pub idle_expires_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
}

/// A stored refresh token with its family, as the refresh grant, revocation and
/// introspection need it.
#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub token_hash: TokenHash,
    pub family_id: FamilyId,
    pub client_id: ClientId,
    pub user_id: UserId,
    /// None for an offline family.
    pub session_id: Option<SessionId>,
    pub scope: ScopeSet,
    pub auth_time: OffsetDateTime,
    pub amr: Vec<String>,
    /// The claims the authorization's `claims` parameter released (Core §5.5).
    pub claims: RequestedClaims,
    pub issued_at: OffsetDateTime,
    pub idle_expires_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
    pub rotated_at: Option<OffsetDateTime>,
    pub family_revoked: bool,
    /// The encrypted response that rotated this token, while the retry window lasts.
    pub successor_response: Option<Vec<u8>>,
    pub successor_until: Option<OffsetDateTime>,
    /// For a session-bound family: whether its browser session is live (not revoked, not
    /// expired) and when it expires absolutely.
    pub session_live: bool,
    pub session_idle_expires_at: Option<OffsetDateTime>,
    pub session_absolute_expires_at: Option<OffsetDateTime>,
    pub user_disabled: bool,
}

/// One rotation: the presented token is marked rotated and its successor inserted, in one
/// transaction, only if it is still unrotated, unexpired and its family alive.
#[derive(Debug)]
pub struct RefreshRotation<'a> {
    pub presented: TokenHash,
    pub family_id: FamilyId,
    pub successor: TokenHash,
    pub successor_idle_expires_at: OffsetDateTime,
    pub access_token_jti: uuid::Uuid,
    pub access_token_expires_at: OffsetDateTime,
    /// The response, sealed under the master key, kept until `response_until` for the
    /// idempotent retry window (None when the window is off).
    pub sealed_response: Option<(Vec<u8>, OffsetDateTime)>,
    /// A session-bound family: its browser session is locked (and must be live), and,
    /// when given, its idle expiry moves to that instant (a refresh is activity).
    pub touch_session: Option<(SessionId, Option<OffsetDateTime>)>,
    pub audit: &'a AuditEvent,
}

#[derive(Debug)]
pub enum Redemption {
    Redeemed(Box<AuthorizationCodeRecord>),
    /// Already used: the tokens issued for it were revoked (RFC 6749 §4.1.2).
    Reused,
    /// Unknown, expired, or bound to another client, redirect URI or verifier.
    Invalid,
}

/// A new browser session to insert (the cookie value is not part of it, only its hash).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id_hash: TokenHash,
    pub session: BrowserSession,
}

/// Why a password hash is replaced.
#[derive(Debug, Clone, Copy)]
pub enum PasswordChange<'a> {
    /// An administrative change: every session of the user ends and any lockout of the
    /// account name is lifted (when its key is known: `None` leaves the counter to expire),
    /// audited.
    Reset {
        throttle_key: Option<&'a str>,
        audit: &'a AuditEvent,
    },
    /// A transparent upgrade at sign-in: only if the stored hash is still `previous`.
    Rehash { previous: &'a PasswordHash },
}

/// The outcome of `reserve_login_attempt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Go ahead: the attempt holds this lease on the budget.
    Granted(LeaseId),
    /// Too many verified failures: refused until `until`.
    Locked { until: OffsetDateTime },
    /// Not locked, but attempts in flight hold the whole remaining budget; ask again
    /// once they have been decided.
    Busy,
}

/// Everything a successful sign-in changes, applied in one transaction (ending the
/// attempt's lease: the throttle row goes).
#[derive(Debug)]
pub struct CompletedLogin<'a> {
    pub transaction: TokenHash,
    pub session: &'a NewSession,
    pub throttle_key: &'a str,
    /// The attempt's lease, ended with the counter.
    pub lease: LeaseId,
    /// The hash of a session cookie the browser already held: that session is replaced.
    pub replaces: Option<TokenHash>,
    /// The password hash that was verified: if it changed meanwhile (a reset) or the user
    /// was disabled, no session is created.
    pub verified_hash: &'a PasswordHash,
    pub audit: &'a AuditEvent,
}

/// A signing key as stored: the private half only ever encrypted under the master key.
#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: String,
    /// `next` (published, not signing), `current` (signing) or `retired` (published until
    /// `remove_after`).
    pub state: String,
    pub encrypted_private_key: Vec<u8>,
    pub public_jwk: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub activated_at: Option<OffsetDateTime>,
    pub retired_at: Option<OffsetDateTime>,
    pub remove_after: Option<OffsetDateTime>,
}

/// Retires one signing key and, when it was the current key of its algorithm, promotes
/// the oldest `next` key (or, without one, `fresh[0]`) and inserts a fresh `next`, all in
/// one transaction. Keys whose `remove_after` has passed are deleted on the way.
#[derive(Debug)]
pub struct KeyRetirement<'a> {
    pub kid: &'a str,
    /// A scheduled or manual rotation: retire `kid` only if it is still current (compare
    /// and swap), otherwise `LostRace`. An emergency retirement retires it in any state.
    pub only_if_current: bool,
    /// With `only_if_current`: the encrypted private key the caller loaded. If the row
    /// holds another blob (re-encrypted by a master-key rotation), `LostRace`: a ring still
    /// holding the old master key must not add keys encrypted under it.
    pub expected_private_key: Option<&'a [u8]>,
    pub now: OffsetDateTime,
    /// When the retired key stops verifying and leaves the JWKS.
    pub remove_after: OffsetDateTime,
    /// Freshly generated keys (their `state` and `activated_at` are set here): the first
    /// becomes `next` (or `current` when no `next` exists, the second then `next`).
    pub fresh: &'a [SigningKeyRecord],
    pub audit: &'a AuditEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retired {
    Retired {
        /// The state the key was in before.
        previous_state: String,
        /// The key that became current, when the retired one was current.
        promoted: Option<String>,
        /// The key inserted as next, if any.
        next: Option<String>,
        /// How many keys past `remove_after` were deleted.
        deleted: u64,
    },
    /// `only_if_current` and the key is no longer current: another rotation won.
    LostRace,
    NotFound,
}

/// One private key re-encrypted under a new master key (see `reencrypt_signing_keys`).
#[derive(Debug)]
pub struct ReencryptedKey {
    pub kid: String,
    /// The blob as read: the update applies only if the row still holds it.
    pub old: Vec<u8>,
    pub new: Vec<u8>,
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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Open and idle connections of the pools (metrics).
    fn pool_stats(&self) -> PoolStats;
    /// Versions of the migrations this build carries that the database lacks.
    async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    async fn close(&self);

    async fn create_user(
        &self,
        user: &NewUser,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<User, StoreError>;
    async fn find_user(
        &self,
        username: &Username,
    ) -> Result<Option<(User, Option<PasswordHash>)>, StoreError>;
    async fn find_user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn list_users(&self, limit: u32) -> Result<Vec<User>, StoreError>;
    /// Replaces the password hash.
    async fn set_password_hash(
        &self,
        id: UserId,
        hash: &PasswordHash,
        now: OffsetDateTime,
        change: PasswordChange<'_>,
    ) -> Result<bool, StoreError>;
    /// Disabling also revokes every session of the user.
    async fn set_user_disabled(
        &self,
        id: UserId,
        disabled: bool,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    async fn insert_login_transaction(&self, tx: &LoginTransaction) -> Result<(), StoreError>;
    /// An unexpired, unconsumed transaction.
    async fn find_login_transaction(
        &self,
        id_hash: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<Option<LoginTransaction>, StoreError>;

    /// Leases one attempt on `key`'s failure budget *before* the password is checked, in
    /// one transaction that holds the key's row, so concurrent attempts cannot all see
    /// room: granted while the verified failures plus the live leases stay under
    /// `policy.max_failures` (once the limit was reached and its lock has run out, one
    /// attempt at a time). Refused while the key is locked; `Busy` while attempts in
    /// flight hold the whole budget. A lease lapses after `lease` (a lost attempt).
    /// Every granted lease ends with `record_login_failure`, `release_login_attempt` or
    /// `complete_login`, each of which deletes it by id (so it ends once).
    async fn reserve_login_attempt(
        &self,
        key: &str,
        now: OffsetDateTime,
        lease: time::Duration,
        policy: &ThrottlePolicy,
    ) -> Result<Reservation, StoreError>;
    /// Ends a lease with a verified failure (a wrong password, an unknown or disabled
    /// account): counts it, and sets the lock when it reaches the limit. A failure is
    /// counted even if its lease had lapsed meanwhile.
    async fn record_login_failure(
        &self,
        key: &str,
        lease: LeaseId,
        now: OffsetDateTime,
        policy: &ThrottlePolicy,
    ) -> Result<ThrottleState, StoreError>;
    /// Ends a lease without a verdict (the password was never checked: the hashing pool
    /// was saturated, or an error occurred): nothing is counted. Idempotent.
    async fn release_login_attempt(&self, lease: LeaseId) -> Result<(), StoreError>;
    /// Consumes the transaction, creates the session, clears the throttle and writes the
    /// audit row atomically. False when the transaction was already used or has expired,
    /// or the verified password hash is no longer the user's.
    async fn complete_login(
        &self,
        login: &CompletedLogin<'_>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// A live session (not revoked, not expired, user not disabled) and its user.
    async fn find_session(
        &self,
        id_hash: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<Option<(BrowserSession, User)>, StoreError>;
    async fn touch_session(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    async fn list_sessions(
        &self,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<BrowserSession>, StoreError>;
    /// Revokes one session of `user` and the refresh-token families bound to it, writing
    /// `audit` if it was live.
    async fn revoke_session(
        &self,
        user: UserId,
        session: SessionId,
        now: OffsetDateTime,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Revokes every session of `user` and every refresh-token family of the user
    /// (offline ones too); returns how many sessions were live.
    async fn revoke_user_sessions(
        &self,
        user: UserId,
        now: OffsetDateTime,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;

    async fn create_client(&self, client: &Client, audit: &AuditEvent) -> Result<(), StoreError>;
    async fn find_client(&self, id: &ClientId) -> Result<Option<Client>, StoreError>;
    async fn list_clients(&self, limit: u32) -> Result<Vec<Client>, StoreError>;
    async fn delete_client(&self, id: &ClientId, audit: &AuditEvent) -> Result<bool, StoreError>;
    async fn set_client_secret(
        &self,
        id: &ClientId,
        hash: &TokenHash,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Every CORS origin registered on some client, and whether a client receiving its
    /// refresh tokens in a cookie registered it (credentialed CORS on /token).
    async fn allowed_origins(&self) -> Result<Vec<(String, bool)>, StoreError>;

    async fn find_consent(
        &self,
        user: UserId,
        client: &ClientId,
    ) -> Result<Option<ScopeSet>, StoreError>;

    /// A transaction carrying an authorization request that is not answered yet (the
    /// sign-in step may be done).
    async fn find_pending_authorization(
        &self,
        id_hash: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<Option<LoginTransaction>, StoreError>;
    /// Answers a pending authorization with a code. False when the transaction was
    /// already answered (nothing is written then).
    async fn issue_code(
        &self,
        issue: &IssueCode<'_>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Answers a pending authorization without a code (e.g. consent denied).
    async fn finish_authorization(
        &self,
        transaction: &TokenHash,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Consumes a code atomically: exactly one presentation can win.
    async fn redeem_code(
        &self,
        redemption: &CodeRedemption<'_>,
        now: OffsetDateTime,
    ) -> Result<Redemption, StoreError>;
    /// Whether the access token `jti` was revoked, the browser session `session` it was
    /// issued in has ended by revocation, or its client no longer exists (one round trip,
    /// three indexed lookups).
    async fn is_access_token_revoked(
        &self,
        jti: uuid::Uuid,
        session: Option<SessionId>,
        client: &ClientId,
    ) -> Result<bool, StoreError>;
    /// Denylists an access token until it expires (RFC 7009), with its audit row.
    async fn revoke_access_token(
        &self,
        jti: uuid::Uuid,
        expires_at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// A refresh token by hash, whatever its state, with its family.
    async fn find_refresh_token(
        &self,
        hash: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// Rotates a refresh token atomically: false when another request rotated it first,
    /// or it expired or its family was revoked meanwhile (nothing is written then).
    async fn rotate_refresh_token(
        &self,
        rotation: &RefreshRotation<'_>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Revokes a family: every token in it stops working and the access tokens issued
    /// from it are denylisted. Writes `audit` whether or not the family was still live
    /// (a replay of a revoked family is recorded too); true if it was live.
    async fn revoke_refresh_family(
        &self,
        family: FamilyId,
        now: OffsetDateTime,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Every stored signing key, oldest first.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// `Conflict` when the key's algorithm already has a current key (instances racing
    /// to create the first key: one wins, the others reload).
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Rotation and emergency retirement, in one transaction (see `KeyRetirement`).
    async fn retire_signing_key(&self, r: &KeyRetirement<'_>) -> Result<Retired, StoreError>;
    /// A master-key rotation: every private key re-encrypted in one transaction with its
    /// audit row. `Conflict` when the set of keys or any stored blob is not what the caller
    /// read (a rotation meanwhile); nothing is written then.
    async fn reencrypt_signing_keys(
        &self,
        keys: &[ReencryptedKey],
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Deletes retired keys whose `remove_after` has passed; returns how many.
    async fn purge_removed_signing_keys(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
    /// Postgres: a listener for the notification every change to `signing_keys` sends in
    /// its transaction. `None` on SQLite (single node: nothing else changes the keys while
    /// the server runs but the CLI, which the interval reload covers).
    async fn listen_key_changes(&self) -> Result<Option<KeyChangeListener>, StoreError>;

    /// For decisions that change nothing else (a refused or failed attempt), in one
    /// transaction.
    async fn record_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    // The admin API and the CLI (see `crate::users`, `crate::clients`).
    /// The audit rows matching every filter, newest first, at most `limit` (1..=1000).
    async fn search_audit(&self, search: &AuditSearch) -> Result<Vec<AuditRecord>, StoreError>;
    /// Clients ordered by client_id, after `after` (a cursor), at most `limit`.
    async fn list_clients_after(
        &self,
        after: Option<&ClientId>,
        limit: u32,
    ) -> Result<Vec<Client>, StoreError>;
    /// Replaces the mutable fields of a client (not its kind, secret or creation time).
    async fn update_client(&self, client: &Client, audit: &AuditEvent) -> Result<bool, StoreError>;
    /// Suspends (`disabled`) or re-enables a client; true when its state changed (the
    /// audit row is written only then).
    async fn set_client_disabled(
        &self,
        id: &ClientId,
        disabled: bool,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Users ordered by username, after `after` (a cursor), at most `limit`.
    async fn list_users_after(
        &self,
        after: Option<&Username>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError>;
    /// Replaces a user's profile (email, its verification, name); `None` when no such user.
    async fn update_user_profile(
        &self,
        id: UserId,
        profile: &UserProfile,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<Option<User>, StoreError>;
    /// Deletes a user: their sessions and consents go with them (foreign keys), as do
    /// their pending authorization codes and the lockout counter of their name
    /// (`throttle_key`, when known). Audit rows stay (they have no foreign keys).
    async fn delete_user(
        &self,
        id: UserId,
        throttle_key: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Rows per table, and for the tables that grow with traffic, how many rows were
    /// added since `since` (`portcullis doctor`).
    async fn table_sizes(&self, since: OffsetDateTime) -> Result<Vec<TableSize>, StoreError>;

    /// Deletes up to `batch` expired rows per table; returns how many went.
    async fn purge_expired(&self, cutoffs: &PurgeCutoffs, batch: u32) -> Result<u64, StoreError>;
}

/// Opens the store named by `database.url`: `postgres://…` or `sqlite:…`.
/// The versions of `migrator`'s (up) migrations missing from `applied`.
fn pending_versions(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Vec<i64> {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| m.version)
        .collect()
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
