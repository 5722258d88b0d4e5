//! The per-account throttle: an attempt takes a lease on the account's failure budget
//! before its password is checked, so concurrent guesses cannot outrun the lockout.

use std::sync::Arc;

use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::throttle::{LeaseId, retry_after_secs};
use crate::domain::user::Username;
use crate::storage::{Reservation, Store};

use super::super::Authenticator;
use super::name_user;
use super::outcome::{LoginError, LoginOutcome};

/// How long a sign-in waits for attempts in flight on the same account to be decided
/// when they hold its whole failure budget, before answering "busy" (429).
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Authenticator {
    /// Takes a lease on the account's failure budget, waiting (briefly) while attempts
    /// in flight hold all of it; a locked account is refused at once, audited.
    pub(super) async fn lease_attempt(
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
                    self.audit_throttled(now, actor, "account_locked", username)
                        .await?;
                    return Ok(Err(LoginOutcome::Throttled {
                        retry_after: retry_after_secs(now, until),
                    }));
                }
                Reservation::Busy if tokio::time::Instant::now() + pause >= give_up => {
                    // Not a lockout: this many checks of one account were still running.
                    self.audit_throttled(now, actor, "attempts_in_flight", None)
                        .await?;
                    return Err(LoginError::Busy);
                }
                Reservation::Busy => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(250));
                }
            }
        }
    }

    /// Audits an attempt refused before its password was checked; `username` names the
    /// account when it exists.
    pub(super) async fn audit_throttled(
        &self,
        now: time::OffsetDateTime,
        actor: &Actor,
        reason: &str,
        username: Option<&Username>,
    ) -> Result<(), LoginError> {
        let user = match username {
            Some(name) => self.store.find_user(name).await?.map(|(user, _)| user),
            None => None,
        };
        let audit = AuditEvent::new(now, AuditKind::LoginThrottled, Outcome::Failure, actor)
            .detail("reason", reason);
        self.store
            .record_audit(&[name_user(audit, user.as_ref())])
            .await?;
        Ok(())
    }
}

/// A granted attempt's share of the account's failure budget. Ended by the verdict
/// (`settled`) or given back (`release`); a request dropped mid-check (the client went
/// away) gives it back in the background, and a lost one lapses with its lease.
pub(super) struct Lease {
    store: Arc<dyn Store>,
    pub(super) id: LeaseId,
    open: bool,
}

impl Lease {
    pub(super) fn settled(&mut self) {
        self.open = false;
    }

    /// Gives the lease back; false if it had already ended (with a verdict).
    pub(super) async fn release(&mut self) -> bool {
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
