//! The checks of a sign-in attempt once its form is known to be live: the per-address
//! limit, the password (always one argon2 verification), and the verdict, whose failures
//! count towards the account's lockout.

use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditKind, Outcome};
use crate::domain::throttle::retry_after_secs;
use crate::domain::user::{Password, PasswordHash, User, Username};
use crate::password::{HashError, Verification};

use super::super::Authenticator;
use super::lease::Lease;
use super::name_user;
use super::outcome::{LoginError, LoginFailure, LoginOutcome};
use super::request::Browser;

/// The password check of one attempt: the account it named, if any, and the verdict of
/// the argon2 verification.
pub(super) struct Checked {
    pub user: Option<User>,
    /// The account's hash, when it has one and is not disabled.
    pub usable_hash: Option<PasswordHash>,
    pub verification: Verification,
    /// A copy of the password, to rehash it if the verification says so.
    pub password: Password,
}

impl Checked {
    /// Why the attempt fails, or the verified account and its hash.
    pub fn verdict(
        &self,
        username: Option<&Username>,
    ) -> Result<(User, PasswordHash), LoginFailure> {
        let failure = match (username, &self.user) {
            (None, _) => LoginFailure::InvalidInput,
            (Some(_), None) => LoginFailure::UnknownUser,
            (Some(_), Some(u)) if u.disabled => LoginFailure::Disabled,
            (Some(_), Some(_)) if !self.verification.matches => LoginFailure::BadPassword,
            (Some(_), Some(user)) => match &self.usable_hash {
                Some(hash) => return Ok((user.clone(), hash.clone())),
                None => LoginFailure::UnknownUser,
            },
        };
        Err(failure)
    }
}

impl Authenticator {
    /// The per-address limit (before anything else is looked at); `Err` is the refusal.
    // SECURITY: attempts are counted (per address) or leased (per account) *before* the
    // password is checked, so a burst of concurrent guesses cannot outrun either limit;
    // only a verified failure stays counted.
    pub(super) async fn ip_limit(
        &self,
        browser: &Browser<'_>,
        now: OffsetDateTime,
    ) -> Result<Result<(), LoginOutcome>, LoginError> {
        let Some(ip) = browser.ip else {
            return Ok(Ok(()));
        };
        let Err(until) = self.ip_limiter.reserve(ip, now) else {
            return Ok(Ok(()));
        };
        self.audit_throttled(now, browser.actor, "ip_limit", None)
            .await?;
        Ok(Err(LoginOutcome::Throttled {
            retry_after: retry_after_secs(now, until),
        }))
    }

    /// Gives back the per-address count of an attempt that was not decided, or that
    /// succeeded.
    pub(super) fn refund_ip(&self, ip: Option<std::net::IpAddr>) {
        if let Some(ip) = ip {
            self.ip_limiter.refund(ip);
        }
    }

    /// Looks the account up and verifies the password.
    pub(super) async fn verify_password(
        &self,
        username: Option<&Username>,
        password: Password,
    ) -> Result<Checked, LoginError> {
        let found = match username {
            Some(name) => self.store.find_user(name).await?,
            None => None,
        };
        let (user, stored_hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        let usable_hash = stored_hash.filter(|_| user.as_ref().is_some_and(|u| !u.disabled));
        let copy = password.duplicate();
        // SECURITY: always run one argon2 verification, against a dummy hash when there is
        // no usable one, so timing does not tell unknown users from wrong passwords.
        let verification = self
            .hasher
            .verify(password, usable_hash.clone())
            .await
            .map_err(|e| match e {
                HashError::Busy => LoginError::Busy,
                HashError::Failed(m) => LoginError::Hash(m),
            })?;
        Ok(Checked {
            user,
            usable_hash,
            verification,
            password: copy,
        })
    }

    /// A verified failure: counted towards the account's lockout (which may start now)
    /// and audited, ending the lease.
    pub(super) async fn record_failure(
        &self,
        key: &str,
        lease: &mut Lease,
        failure: LoginFailure,
        user: Option<&User>,
        browser: &Browser<'_>,
        now: OffsetDateTime,
    ) -> Result<LoginOutcome, LoginError> {
        // SECURITY: only a verified failure counts towards the lockout (issue 10 #6).
        let state = self
            .store
            .record_login_failure(key, lease.id, now, &self.throttle)
            .await?;
        lease.settled();
        let audit = AuditEvent::new(
            now,
            AuditKind::LoginFailure,
            Outcome::Failure,
            browser.actor,
        )
        .detail("reason", failure.reason())
        .detail("failures", state.failures);
        let audit = name_user(audit, user);
        self.store
            .record_audit(&with_lock(audit, &state, "account_locked", now))
            .await?;
        Ok(match state.locked_until {
            Some(until) => LoginOutcome::Throttled {
                retry_after: retry_after_secs(now, until),
            },
            None => LoginOutcome::Rejected(failure),
        })
    }
}

/// A counted failure's audit row, and a `login.throttled` one (`reason`) when it started a
/// lock.
pub(super) fn with_lock(
    audit: AuditEvent,
    state: &crate::domain::throttle::ThrottleState,
    reason: &str,
    now: OffsetDateTime,
) -> Vec<AuditEvent> {
    let mut events = vec![audit.clone()];
    if let Some(until) = state.locked_until {
        let mut locked = audit;
        locked.kind = AuditKind::LoginThrottled;
        events.push(
            locked
                .detail("reason", reason)
                .detail("locked_seconds", (until - now).whole_seconds()),
        );
    }
    events
}
