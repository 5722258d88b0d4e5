//! Browser sessions and sign-in: login transactions, the per-account attempt leases and
//! lockout counters (brute-force throttle), and the session rows behind the login cookie.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use crate::audit::AuditEvent;
use crate::domain::mfa::SessionFactors;
use crate::domain::second_step::SecondStep;
use crate::domain::secret::{TokenHash, kind};
use crate::domain::session::{BrowserSession, SessionId};
use crate::domain::throttle::{LeaseId, ThrottlePolicy, ThrottleState};
use crate::domain::user::{PasswordHash, User, UserId};

/// A sign-in form waiting to be submitted.
#[derive(Debug, Clone)]
pub struct LoginTransaction {
    pub id_hash: TokenHash<kind::LoginTransaction>,
    pub binding_hash: TokenHash<kind::BrowserBinding>,
    /// A server-chosen local path; never taken from a request.
    pub return_to: String,
    pub request: Option<serde_json::Value>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// The session a sign-in through this transaction created.
    pub session_id: Option<SessionId>,
    /// Set once the password step is done and the second factor is asked for.
    pub second_step: Option<SecondStep>,
}

/// A new browser session to insert (the cookie value is not part of it, only its hash).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id_hash: TokenHash<kind::SessionToken>,
    pub session: BrowserSession,
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
    pub transaction: TokenHash<kind::LoginTransaction>,
    pub session: &'a NewSession,
    pub throttle_key: &'a str,
    /// The attempt's lease, ended with the counter.
    pub lease: LeaseId,
    /// The hash of a session cookie the browser already held: that session is replaced.
    pub replaces: Option<TokenHash<kind::SessionToken>>,
    /// What was verified: if it changed meanwhile (a password reset, the passkey removed)
    /// or the user was disabled, no session is created.
    pub verified: VerifiedCredential<'a>,
    pub audit: &'a AuditEvent,
    /// Another throttle counter cleared with it (the password's, when the attempt was
    /// the second factor).
    pub also_clear: Option<&'a str>,
    /// Whether this completes a second step: the transaction must then be waiting for
    /// one, and otherwise must not be (a transaction parked for its second factor never
    /// completes through the password path).
    pub second_step: bool,
}

/// The credential a sign-in was verified with.
#[derive(Debug, Clone, Copy)]
pub enum VerifiedCredential<'a> {
    /// The password, by the hash it was checked against.
    Password(&'a PasswordHash),
    /// A passkey (its factor id), for a sign-in without a password.
    Passkey(uuid::Uuid),
}

/// A step-up of a live session: the second factor was given, so the session gains it.
#[derive(Debug)]
pub struct CompletedStepUp<'a> {
    pub transaction: TokenHash<kind::LoginTransaction>,
    pub session: SessionId,
    pub factors: &'a SessionFactors,
    pub auth_time: OffsetDateTime,
    pub throttle_key: &'a str,
    pub lease: LeaseId,
    pub audit: &'a AuditEvent,
}

/// Sign-in and browser sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_login_transaction(&self, tx: &LoginTransaction) -> Result<(), StoreError>;
    /// An unexpired, unconsumed transaction.
    async fn find_login_transaction(
        &self,
        id_hash: &TokenHash<kind::LoginTransaction>,
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
    /// Records that the transaction's password step is done (compare and swap: only on an
    /// unconsumed, unexpired transaction without one).
    async fn set_second_step(
        &self,
        id_hash: &TokenHash<kind::LoginTransaction>,
        step: &SecondStep,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Consumes the transaction (naming the session), adds the factor to the live session
    /// (its amr and auth_time too), ends the lease, clears the counter and writes the audit
    /// row, atomically. False when the transaction or the session is no longer live.
    async fn complete_step_up(
        &self,
        step_up: &CompletedStepUp<'_>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// A live session (not revoked, not expired, user not disabled) and its user.
    async fn find_session(
        &self,
        id_hash: &TokenHash<kind::SessionToken>,
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
}
