//! Sign-in: the login transaction that a form is bound to, and the password check with
//! per-account and per-IP throttling. Every decision is audited.

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::secret::{OpaqueToken, TokenHash, constant_time_eq};
use crate::domain::session::{BrowserSession, MAX_USER_AGENT_LEN, SessionId};
use crate::domain::throttle::{LeaseId, retry_after_secs};
use crate::domain::user::{Password, PasswordHash, User, UserId, Username};
use crate::password::HashError;
use crate::storage::{
    CompletedLogin, LoginTransaction, NewSession, PasswordChange, Reservation, Store, StoreError,
};

use super::Authenticator;

/// A submitted sign-in form whose transaction and CSRF token were already checked.
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    pub transaction: &'a LoginTransaction,
    pub username: &'a str,
    /// Over-long input is already refused (it verifies as the empty password).
    pub password: Password,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    pub actor: &'a Actor,
    /// The hash of a session cookie the browser already sent; that session is replaced.
    pub replaces: Option<TokenHash>,
}

#[derive(Debug)]
pub enum LoginOutcome {
    /// Signed in: set `cookie` and go to `return_to`.
    Success {
        cookie: OpaqueToken,
        session: Box<BrowserSession>,
        return_to: String,
    },
    /// Wrong credentials, shown as one generic message whatever the cause.
    Rejected(LoginFailure),
    /// Too many failures for this account or address.
    Throttled { retry_after: u64 },
}

/// Why a sign-in failed; only the audit trail sees the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    UnknownUser,
    BadPassword,
    Disabled,
    InvalidInput,
}

impl LoginFailure {
    fn reason(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::BadPassword => "bad_password",
            Self::Disabled => "disabled",
            Self::InvalidInput => "invalid_input",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The transaction was consumed or expired while the password was checked.
    #[error("the sign-in form has expired")]
    Expired,
    /// Password hashing stayed saturated for the whole queue timeout.
    #[error("too many sign-ins at once")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password verification failed: {0}")]
    Hash(String),
}

impl Authenticator {
    /// Creates the server-side record a sign-in form is bound to. Returns the
    /// transaction id to embed in the form; `binding` is the browser's binding cookie.
    pub async fn start_login(
        &self,
        binding: &OpaqueToken,
        return_to: &str,
        request: Option<serde_json::Value>,
    ) -> Result<OpaqueToken, StoreError> {
        let id = OpaqueToken::generate();
        let now = self.clock.now();
        self.store
            .insert_login_transaction(&LoginTransaction {
                id_hash: id.hash(),
                binding_hash: binding.hash(),
                return_to: return_to.to_owned(),
                request,
                created_at: now,
                expires_at: now + self.transaction_lifetime,
                session_id: None,
            })
            .await?;
        Ok(id)
    }

    /// The live transaction `id`, provided it was issued to this browser.
    pub async fn load_login(
        &self,
        id: &OpaqueToken,
        binding: &OpaqueToken,
    ) -> Result<Option<LoginTransaction>, StoreError> {
        let tx = self
            .store
            .find_login_transaction(&id.hash(), self.clock.now())
            .await?;
        // SECURITY: the form only works in the browser it was served to (login CSRF).
        Ok(tx.filter(|t| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                t.binding_hash.as_bytes(),
                binding.hash().as_bytes(),
            ))
        }))
    }

    /// The CSRF token of a sign-in form: bound to the transaction and the browser.
    pub fn login_csrf_token(id: &OpaqueToken, binding: &OpaqueToken) -> String {
        binding.derive("login-csrf", id.expose())
    }

    pub fn check_login_csrf(id: &OpaqueToken, binding: &OpaqueToken, presented: &str) -> bool {
        constant_time_eq(&Self::login_csrf_token(id, binding), presented)
    }

    pub async fn login(&self, attempt: LoginAttempt<'_>) -> Result<LoginOutcome, LoginError> {
        let now = self.clock.now();
        let actor = attempt.actor;

        // SECURITY: attempts are counted (per address) or leased (per account) *before*
        // the password is checked, so a burst of concurrent guesses cannot outrun either
        // limit; only a verified failure stays counted.
        if let Some(ip) = attempt.ip
            && let Err(until) = self.ip_limiter.reserve(ip, now)
        {
            let audit = AuditEvent::new(now, AuditKind::LoginThrottled, Outcome::Failure, actor)
                .detail("reason", "ip_limit");
            self.store.record_audit(&[audit]).await?;
            return Ok(LoginOutcome::Throttled {
                retry_after: retry_after_secs(now, until),
            });
        }

        let username = Username::parse(attempt.username).ok();
        // SECURITY: keyed, never a bare hash of what was typed (people type passwords here).
        let key = self.throttle_keys.key(username.as_ref(), attempt.username);
        // An attempt that found the account's budget held by checks in flight for the
        // whole wait keeps its per-address count: it may be part of a flood.
        let mut lease = match self.lease_attempt(&key, username.as_ref(), actor).await? {
            Ok(lease) => lease,
            Err(refused) => return Ok(refused),
        };
        let ip = attempt.ip;
        let result = self
            .check_password(attempt, username.as_ref(), &key, &mut lease)
            .await;
        // Nothing was decided about the password (the pool was saturated, the form
        // expired meanwhile, or an error): neither limit counts the attempt. A verdict
        // that was recorded before an error stays counted.
        if result.is_err() && lease.release().await {
            self.refund_ip(ip);
        }
        result
    }

    fn refund_ip(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.ip_limiter.refund(ip);
        }
    }

    /// Takes a lease on the account's failure budget, waiting (briefly) while attempts
    /// in flight hold all of it; a locked account is refused at once, audited.
    async fn lease_attempt(
        &self,
        key: &str,
        username: Option<&Username>,
        actor: &Actor,
    ) -> Result<Result<Lease, LoginOutcome>, LoginError> {
        let give_up = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
        let mut pause = std::time::Duration::from_millis(20);
        loop {
            let now = self.clock.now();
            let reservation = self
                .store
                .reserve_login_attempt(key, now, self.throttle.attempt_lease, &self.throttle)
                .await?;
            match reservation {
                Reservation::Granted(id) => {
                    return Ok(Ok(Lease {
                        store: Arc::clone(&self.store),
                        id,
                        open: true,
                    }));
                }
                Reservation::Locked { until } => {
                    let user = match username {
                        Some(name) => self.store.find_user(name).await?.map(|(user, _)| user),
                        None => None,
                    };
                    let audit =
                        AuditEvent::new(now, AuditKind::LoginThrottled, Outcome::Failure, actor)
                            .detail("reason", "account_locked");
                    self.store
                        .record_audit(&[name_user(audit, user.as_ref())])
                        .await?;
                    return Ok(Err(LoginOutcome::Throttled {
                        retry_after: retry_after_secs(now, until),
                    }));
                }
                Reservation::Busy if tokio::time::Instant::now() + pause >= give_up => {
                    // Not a lockout: this many checks of one account were still running.
                    let audit =
                        AuditEvent::new(now, AuditKind::LoginThrottled, Outcome::Failure, actor)
                            .detail("reason", "attempts_in_flight");
                    self.store.record_audit(&[audit]).await?;
                    return Err(LoginError::Busy);
                }
                Reservation::Busy => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(250));
                }
            }
        }
    }

    /// Checks the password of a leased attempt and ends the lease with the verdict: a
    /// failure is counted, a success clears the counter. An error leaves it to the caller.
    async fn check_password(
        &self,
        attempt: LoginAttempt<'_>,
        username: Option<&Username>,
        key: &str,
        lease: &mut Lease,
    ) -> Result<LoginOutcome, LoginError> {
        let actor = attempt.actor;
        let found = match username {
            Some(name) => self.store.find_user(name).await?,
            None => None,
        };
        let (user, stored_hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        let usable_hash = stored_hash.filter(|_| user.as_ref().is_some_and(|u| !u.disabled));
        let password_for_rehash = attempt.password.duplicate();
        // SECURITY: always run one argon2 verification, against a dummy hash when there is
        // no usable one, so timing does not tell unknown users from wrong passwords.
        let verification = self
            .hasher
            .verify(attempt.password, usable_hash.clone())
            .await
            .map_err(|e| match e {
                HashError::Busy => LoginError::Busy,
                HashError::Failed(m) => LoginError::Hash(m),
            })?;

        // The lease may have waited and the check queued: decide at the time of the verdict.
        let now = self.clock.now();
        let failure = match (username, &user) {
            (None, _) => Some(LoginFailure::InvalidInput),
            (Some(_), None) => Some(LoginFailure::UnknownUser),
            (Some(_), Some(u)) if u.disabled => Some(LoginFailure::Disabled),
            (Some(_), Some(_)) if !verification.matches => Some(LoginFailure::BadPassword),
            _ => None,
        };
        let (Some(user), Some(verified_hash), None) = (user.clone(), usable_hash, failure) else {
            let failure = failure.unwrap_or(LoginFailure::UnknownUser);
            // SECURITY: only a verified failure counts towards the lockout (issue 10 #6).
            let state = self
                .store
                .record_login_failure(key, lease.id, now, &self.throttle)
                .await?;
            lease.settled();
            let audit = AuditEvent::new(now, AuditKind::LoginFailure, Outcome::Failure, actor)
                .detail("reason", failure.reason())
                .detail("failures", state.failures);
            let audit = name_user(audit, user.as_ref());
            let mut events = vec![audit.clone()];
            if let Some(until) = state.locked_until {
                let mut locked = audit;
                locked.kind = AuditKind::LoginThrottled;
                events.push(
                    locked
                        .detail("reason", "account_locked")
                        .detail("locked_seconds", (until - now).whole_seconds()),
                );
            }
            self.store.record_audit(&events).await?;
            return Ok(match state.locked_until {
                Some(until) => LoginOutcome::Throttled {
                    retry_after: retry_after_secs(now, until),
                },
                None => LoginOutcome::Rejected(failure),
            });
        };

        let cookie = OpaqueToken::generate();
        let (idle_expires_at, absolute_expires_at) = self.sessions.expiry_for_new(now);
        let session = BrowserSession {
            id: SessionId::new(),
            user_id: user.id,
            auth_time: now,
            amr: vec!["pwd".to_owned()],
            created_at: now,
            last_seen_at: now,
            idle_expires_at,
            absolute_expires_at,
            ip: attempt.ip.map(|ip| ip.to_string()),
            user_agent: attempt.user_agent.map(truncate_user_agent),
        };
        let new_session = NewSession {
            id_hash: cookie.hash(),
            session,
        };
        let audit = AuditEvent::new(now, AuditKind::LoginSuccess, Outcome::Success, actor)
            .user(user.id)
            .session(new_session.session.id)
            .detail("amr", "pwd");
        let completed = self
            .store
            .complete_login(
                &CompletedLogin {
                    transaction: attempt.transaction.id_hash,
                    session: &new_session,
                    throttle_key: key,
                    lease: lease.id,
                    replaces: attempt.replaces,
                    verified_hash: &verified_hash,
                    audit: &audit,
                },
                now,
            )
            .await?;
        if !completed {
            return Err(LoginError::Expired);
        }
        lease.settled();
        self.refund_ip(attempt.ip);
        if verification.needs_rehash {
            self.upgrade_hash_in_background(user.id, password_for_rehash, verified_hash);
        }
        Ok(LoginOutcome::Success {
            cookie,
            session: Box::new(new_session.session),
            return_to: attempt.transaction.return_to.clone(),
        })
    }

    /// The stored hash used weaker parameters than configured now: replace it, off the
    /// request path. A failure only means the upgrade waits for the next sign-in.
    fn upgrade_hash_in_background(&self, user: UserId, password: Password, previous: PasswordHash) {
        let this = self.clone();
        tokio::spawn(async move {
            let result = match this.hasher.hash(password).await {
                Ok(hash) => this
                    .store
                    .set_password_hash(
                        user,
                        &hash,
                        this.clock.now(),
                        PasswordChange::Rehash {
                            previous: &previous,
                        },
                    )
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(error) = result {
                tracing::warn!(%user, %error, "could not upgrade a password hash");
            }
        });
    }
}

/// How long a sign-in waits for attempts in flight on the same account to be decided
/// when they hold its whole failure budget, before answering "busy" (429).
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A granted attempt's share of the account's failure budget. Ended by the verdict
/// (`settled`) or given back (`release`); a request dropped mid-check (the client went
/// away) gives it back in the background, and a lost one lapses with its lease.
struct Lease {
    store: Arc<dyn Store>,
    id: LeaseId,
    open: bool,
}

impl Lease {
    fn settled(&mut self) {
        self.open = false;
    }

    /// Gives the lease back; false if it had already ended (with a verdict).
    async fn release(&mut self) -> bool {
        if !std::mem::take(&mut self.open) {
            return false;
        }
        if let Err(error) = self.store.release_login_attempt(self.id).await {
            // It lapses on its own (`ThrottlePolicy::attempt_lease`).
            tracing::warn!(%error, "could not give back a sign-in attempt's lease");
        }
        true
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, id) = (Arc::clone(&self.store), self.id);
            runtime.spawn(async move {
                if let Err(error) = store.release_login_attempt(id).await {
                    tracing::warn!(%error, "could not give back a sign-in attempt's lease");
                }
            });
        }
    }
}

/// Names the account an attempt was for when it exists (its id and username). For any
/// other name nothing of the typed text is recorded, not even a hash.
// SECURITY: people type passwords into the name field; a hash of it in the audit trail
// (kept for `housekeeping.audit_retention`, served by the admin API) could be reversed by
// a dictionary.
fn name_user(audit: AuditEvent, user: Option<&User>) -> AuditEvent {
    match user {
        Some(u) => audit.user(u.id).detail("username", u.username.as_str()),
        None => audit,
    }
}

fn truncate_user_agent(ua: &str) -> String {
    let mut end = ua.len().min(MAX_USER_AGENT_LEN);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].to_owned()
}
