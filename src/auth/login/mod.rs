//! Sign-in: the login transaction a form is bound to, and the checks a posted form goes
//! through, one function each, in the order `Authenticator::sign_in` runs them:
//!
//! 1. The post comes from our own pages: the handler's `SameOrigin` extractor, before
//!    the body is read (HTTP headers are not this module's business).
//! 2. The form is live, carries its CSRF token and was served to this browser
//!    (`transaction.rs`); otherwise nothing happens and a fresh form is opened.
//! 3. Both fields are filled in (`request.rs`); an empty one is not an attempt.
//! 4. The per-address limit (`checks.rs`).
//! 5. The account's lease on its failure budget, refused while it is locked (`lease.rs`).
//! 6. One argon2 verification, against a dummy hash for unknown or disabled accounts
//!    (`checks.rs`).
//! 7. The verdict: an unknown name, a disabled account or a wrong password is one
//!    generic failure, counted towards the lockout and audited (`checks.rs`).
//! 8. An account with a second factor is asked for it, whether or not the password was
//!    right (`second_factor.rs`: its own throttle, then the code, then 9).
//! 9. The session is created and the transaction consumed (`complete.rs`).
//!
//! The reply kinds are in `outcome.rs`. Every decision is audited.

mod checks;
mod complete;
mod lease;
mod outcome;
mod passkey;
mod request;
mod second_factor;
mod transaction;

pub use outcome::{LiveForm, LoginError, LoginFailure, LoginOutcome, SignInOutcome};
pub use passkey::{PasskeyForm, PasskeyOptionsForm};
pub use request::{Browser, MissingFields, SignInForm, SignInRequest};
pub use second_factor::{SecondFactorForm, SecondFactorRequest};
pub use transaction::DEFAULT_RETURN_TO;

use crate::audit::AuditEvent;
use crate::domain::mfa::SessionFactors;
use crate::domain::user::{Password, User, Username};
use crate::storage::LoginTransaction;

use super::Authenticator;
use complete::{Credential, Verified};
use lease::Lease;
use request::filled_in;

/// One attempt on a live form, past the check that its fields are filled in.
pub(super) struct Attempt<'a> {
    pub(super) transaction: &'a LoginTransaction,
    pub(super) username: Option<&'a Username>,
    /// The account's throttle key.
    pub(super) key: &'a str,
    pub(super) browser: &'a Browser<'a>,
}

impl Authenticator {
    /// `POST /login`: the checks above, in order.
    pub async fn sign_in(&self, request: SignInRequest<'_>) -> Result<SignInOutcome, LoginError> {
        let SignInRequest {
            tx,
            csrf_token,
            username,
            password,
            browser,
        } = request;
        let Some(form) = self.live_form(tx, &csrf_token, &browser).await? else {
            let fresh = self.open_form(browser.binding, browser.ip).await?;
            return Ok(SignInOutcome::Expired(fresh));
        };
        let outcome = match filled_in(&username, password) {
            Err(missing) => LoginOutcome::Incomplete(missing),
            Ok(password) => {
                self.login(&form.transaction, &username, password, &browser)
                    .await?
            }
        };
        Ok(SignInOutcome::Checked {
            form: Box::new(form),
            username,
            outcome,
        })
    }

    /// Checks 4 to 8 on a form whose fields are filled in.
    async fn login(
        &self,
        transaction: &LoginTransaction,
        typed: &str,
        password: Password,
        browser: &Browser<'_>,
    ) -> Result<LoginOutcome, LoginError> {
        let now = self.clock.now();
        if let Err(refused) = self.ip_limit(browser, now).await? {
            return Ok(refused);
        }
        let username = Username::parse(typed).ok();
        // SECURITY: keyed, never a bare hash of what was typed (people type passwords here).
        let key = self.throttle_keys.key(username.as_ref(), typed);
        // An attempt that found the account's budget held by checks in flight for the
        // whole wait keeps its per-address count: it may be part of a flood.
        let mut lease = match self
            .lease_attempt(&key, username.as_ref(), browser.actor)
            .await?
        {
            Ok(lease) => lease,
            Err(refused) => return Ok(refused),
        };
        let attempt = Attempt {
            transaction,
            username: username.as_ref(),
            key: &key,
            browser,
        };
        let result = self.check_password(&attempt, password, &mut lease).await;
        // Nothing was decided about the password (the pool was saturated, the form
        // expired meanwhile, or an error): neither limit counts the attempt. A verdict
        // that was recorded before an error stays counted.
        if result.is_err() && lease.release().await {
            self.refund_ip(browser.ip);
        }
        result
    }

    /// Checks 6 to 8 for a leased attempt; the verdict ends the lease (a failure is
    /// counted, a success clears the counter). An error leaves it to the caller.
    async fn check_password(
        &self,
        attempt: &Attempt<'_>,
        password: Password,
        lease: &mut Lease,
    ) -> Result<LoginOutcome, LoginError> {
        let checked = self.verify_password(attempt.username, password).await?;
        // The lease may have waited and the check queued: decide at the time of the verdict.
        let now = self.clock.now();
        // An account with a second factor is asked for it whatever the verdict on the
        // password, so only someone who also has the factor learns whether it was right.
        let with_factor = match &checked.user {
            Some(user) => self.factors.has_any(user.id).await?,
            None => false,
        };
        match checked.verdict(attempt.username) {
            Err(failure) => {
                let outcome = self
                    .record_failure(
                        attempt.key,
                        lease,
                        failure,
                        checked.user.as_ref(),
                        attempt.browser,
                        now,
                    )
                    .await?;
                match (&checked.user, outcome) {
                    (Some(user), LoginOutcome::Rejected(_)) if with_factor => {
                        let step = self.password_step(attempt, user.id, None, now);
                        self.ask_second_factor(attempt.transaction, &step, now)
                            .await
                    }
                    (_, outcome) => Ok(outcome),
                }
            }
            Ok((user, hash)) if with_factor => {
                // SECURITY: counted like a wrong password (and the address not refunded),
                // so the lockout and the per-address limit answer a right and a wrong guess
                // alike; both factors passing clears the count (`also_clear`).
                let state = self
                    .store
                    .record_login_failure(attempt.key, lease.id, now, &self.throttle)
                    .await?;
                lease.settled();
                if let Some(until) = state.locked_until {
                    return Ok(LoginOutcome::Throttled {
                        retry_after: crate::domain::throttle::retry_after_secs(now, until),
                    });
                }
                let step = self.password_step(attempt, user.id, Some(&hash), now);
                self.ask_second_factor(attempt.transaction, &step, now)
                    .await
            }
            Ok((user, hash)) => {
                let verified = Verified {
                    transaction: attempt.transaction,
                    user,
                    credential: Credential::Password(hash),
                    rehash: checked
                        .verification
                        .needs_rehash
                        .then_some(checked.password),
                    factors: SessionFactors::password(now),
                    also_clear: None,
                    second_factor: None,
                };
                self.create_session(verified, attempt.key, lease, attempt.browser, now)
                    .await
            }
        }
    }
}

/// Names the account an attempt was for when it exists (its id and username). For any
/// other name nothing of the typed text is recorded, not even a hash.
// SECURITY: people type passwords into the name field; a hash of it in the audit trail
// (kept for `housekeeping.audit_retention`, served by the admin API) could be reversed by
// a dictionary.
pub(super) fn name_user(audit: AuditEvent, user: Option<&User>) -> AuditEvent {
    match user {
        Some(u) => audit.user(u.id).detail("username", u.username.as_str()),
        None => audit,
    }
}
