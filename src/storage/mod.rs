//! The `Store`: every query Portcullis makes, behind one interface with a Postgres and a
//! SQLite implementation chosen by the database URL's scheme. SQL lives only here.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditQuery, AuditRecord};
use crate::config::DatabaseSettings;
use crate::domain::client::{Client, ClientId};
use crate::domain::scope::ScopeSet;
use crate::domain::secret::TokenHash;
use crate::domain::session::{BrowserSession, SessionId};
use crate::domain::throttle::{ThrottlePolicy, ThrottleState};
use crate::domain::user::{NewUser, PasswordHash, User, UserId, Username};

pub use postgres::PgStore;
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
    pub audit_issued: &'a AuditEvent,
    pub audit_reused: &'a AuditEvent,
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
    /// account name is lifted, audited.
    Reset {
        throttle_key: &'a str,
        audit: &'a AuditEvent,
    },
    /// A transparent upgrade at sign-in: only if the stored hash is still `previous`.
    Rehash { previous: &'a PasswordHash },
}

/// The outcome of `reserve_login_attempt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Go ahead; `state` includes this attempt (and the lock it set, if any).
    Granted(ThrottleState),
    Locked {
        until: OffsetDateTime,
    },
}

/// Everything a successful sign-in changes, applied in one transaction.
#[derive(Debug)]
pub struct CompletedLogin<'a> {
    pub transaction: TokenHash,
    pub session: &'a NewSession,
    pub throttle_key: &'a str,
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

/// Rows older than these instants are purged.
#[derive(Debug, Clone, Copy)]
pub struct PurgeCutoffs {
    pub now: OffsetDateTime,
    /// Revoked sessions are kept until then (for the account page and investigations).
    pub revoked_before: OffsetDateTime,
    /// Throttle rows whose last failure is older, and which are not locked, go.
    pub throttle_before: OffsetDateTime,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    async fn migrate(&self) -> Result<(), StoreError>;
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

    /// Counts a sign-in attempt against `key` *before* the password is checked, in one
    /// atomic statement, so concurrent attempts cannot slip past the limit: refused while
    /// the key is locked; the attempt that reaches `policy.max_failures` sets the lock.
    /// A successful sign-in refunds it (`complete_login` deletes the row).
    async fn reserve_login_attempt(
        &self,
        key: &str,
        now: OffsetDateTime,
        policy: &ThrottlePolicy,
    ) -> Result<Reservation, StoreError>;
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
    /// Revokes one session of `user`, writing `audit` if it was live.
    async fn revoke_session(
        &self,
        user: UserId,
        session: SessionId,
        now: OffsetDateTime,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Revokes every session of `user`; returns how many were live.
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
    /// Every CORS origin registered on some client.
    async fn allowed_origins(&self) -> Result<Vec<String>, StoreError>;

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
    /// Whether the access token `jti` was revoked (one indexed lookup).
    async fn is_access_token_revoked(&self, jti: uuid::Uuid) -> Result<bool, StoreError>;

    /// Every stored signing key, oldest first.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// `Conflict` when the key's algorithm already has a current key (instances racing
    /// to create the first key: one wins, the others reload).
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Rotation and emergency retirement, in one transaction (see `KeyRetirement`).
    async fn retire_signing_key(&self, r: &KeyRetirement<'_>) -> Result<Retired, StoreError>;

    /// For decisions that change nothing else (a refused or failed attempt), in one
    /// transaction.
    async fn record_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// Deletes up to `batch` expired rows per table; returns how many went.
    async fn purge_expired(&self, cutoffs: &PurgeCutoffs, batch: u32) -> Result<u64, StoreError>;
}

/// Opens the store named by `database.url`: `postgres://…` or `sqlite:…`.
pub async fn connect(settings: &DatabaseSettings) -> Result<Arc<dyn Store>, StoreError> {
    if settings.url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(settings).await?))
    } else {
        Ok(Arc::new(PgStore::connect(settings).await?))
    }
}
