//! The second step of a sign-in, for accounts with a second factor: the code form posted
//! after the password (or, for a step-up, instead of it). Its checks, in order:
//!
//! 1. The form is live, carries its CSRF token, was served to this browser, and its
//!    transaction is waiting for a second factor.
//! 2. The code field is filled in.
//! 3. The per-address limit, then a lease on the account's second-factor budget: wrong
//!    codes lock the account out like wrong passwords (in the database, for every
//!    instance).
//! 4. The code: a TOTP code of one of the user's authenticators (RFC 6238, each time step
//!    once) or an unused recovery code. SECURITY: when the password was wrong the code is
//!    never looked at and the answer is the one a wrong code gets, so the form says
//!    nothing about the password to someone without the factor.
//! 5. The session is created with both factors (or the stepped-up session gains the
//!    second one) and the transaction consumed, in one store call.

use serde::Deserialize;
use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditKind, Outcome};
use crate::auth::SecondFactorUsed;
use crate::domain::mfa::{AMR_HWK, AMR_OTP, AMR_USER, CodeRejection, SessionFactors};
use crate::domain::second_step::SecondStep;
use crate::domain::secret::{OpaqueToken, TokenHash, kind};
use crate::domain::session::BrowserSession;
use crate::domain::user::{PasswordHash, UserId};
use crate::storage::{CompletedStepUp, LoginTransaction, StoreError};

use super::super::Authenticator;
use super::checks::with_lock;
use super::complete::{Credential, Verified};
use super::lease::Lease;
use super::outcome::{LiveForm, LoginError, LoginOutcome, SignInOutcome};
use super::request::Browser;
use super::transaction::return_to;
use super::{Attempt, name_user};

/// The fields of `POST /login/second-factor` as sent: a code from an authenticator app
/// (`code`) or a recovery code (`recovery_code`, from its own form).
#[derive(Debug, Deserialize)]
pub struct SecondFactorForm {
    pub tx: String,
    pub csrf_token: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub recovery_code: String,
}

/// A posted second-factor form, parsed.
#[derive(Debug)]
pub struct SecondFactorRequest<'a> {
    pub tx: Option<OpaqueToken<kind::LoginTransaction>>,
    pub csrf_token: String,
    /// What was typed in whichever field was used (trimmed; cut at 64 characters: no
    /// code is longer).
    pub code: String,
    pub browser: Browser<'a>,
}

impl<'a> SecondFactorRequest<'a> {
    pub fn parse(form: SecondFactorForm, browser: Browser<'a>) -> Self {
        let typed = if form.code.trim().is_empty() {
            form.recovery_code
        } else {
            form.code
        };
        Self {
            tx: OpaqueToken::parse(&form.tx),
            csrf_token: form.csrf_token,
            code: typed.trim().chars().take(64).collect(),
            browser,
        }
    }
}

impl Authenticator {
    /// The second step of a sign-in whose password step just ended (right or wrong).
    pub(super) fn password_step(
        &self,
        attempt: &Attempt<'_>,
        user: UserId,
        verified: Option<&PasswordHash>,
        now: OffsetDateTime,
    ) -> SecondStep {
        SecondStep {
            user_id: user,
            password_ok: verified.is_some(),
            verified_hash: verified.map(|h| h.0.clone()),
            password_at: now.unix_timestamp(),
            password_key: Some(attempt.key.to_owned()),
            step_up: None,
        }
    }

    /// Parks the transaction on its second step; the page asks for the code next.
    pub(super) async fn ask_second_factor(
        &self,
        transaction: &LoginTransaction,
        step: &SecondStep,
        now: OffsetDateTime,
    ) -> Result<LoginOutcome, LoginError> {
        if !self
            .store
            .set_second_step(&transaction.id_hash, step, now)
            .await?
        {
            return Err(LoginError::Expired);
        }
        Ok(LoginOutcome::SecondFactor)
    }

    /// A step-up of `session` within the parked transaction `tx`: the code form is shown
    /// instead of the password form, and a right code adds the factor to the session.
    pub async fn begin_step_up(
        &self,
        tx: &TokenHash<kind::LoginTransaction>,
        session: &BrowserSession,
    ) -> Result<bool, StoreError> {
        let password_at = session
            .factors
            .0
            .get(crate::domain::mfa::AMR_PWD)
            .copied()
            .unwrap_or_else(|| session.auth_time.unix_timestamp());
        let step = SecondStep {
            user_id: session.user_id,
            password_ok: true,
            verified_hash: None,
            password_at,
            password_key: None,
            step_up: Some(session.id),
        };
        self.store
            .set_second_step(tx, &step, self.clock.now())
            .await
    }

    /// `POST /login/second-factor`: the checks above, in order.
    pub async fn second_factor(
        &self,
        request: SecondFactorRequest<'_>,
    ) -> Result<SignInOutcome, LoginError> {
        let SecondFactorRequest {
            tx,
            csrf_token,
            code,
            browser,
        } = request;
        let form = self.live_form(tx, &csrf_token, &browser).await?;
        let Some((form, step)) = form.and_then(|f| {
            let step = f.transaction.second_step.clone()?;
            Some((f, step))
        }) else {
            let fresh = self.open_form(browser.binding, browser.ip).await?;
            return Ok(SignInOutcome::Expired(fresh));
        };
        let outcome = if code.is_empty() {
            LoginOutcome::CodeMissing
        } else {
            self.check_second_factor(&form, &step, &code, &browser)
                .await?
        };
        Ok(SignInOutcome::Checked {
            form: Box::new(form),
            username: String::new(),
            outcome,
        })
    }

    /// Checks 3 to 5 on a filled-in code.
    async fn check_second_factor(
        &self,
        form: &LiveForm,
        step: &SecondStep,
        code: &str,
        browser: &Browser<'_>,
    ) -> Result<LoginOutcome, LoginError> {
        let now = self.clock.now();
        if let Err(refused) = self.ip_limit(browser, now).await? {
            return Ok(refused);
        }
        let key = self.second_factor_key(step.user_id);
        let mut lease = match self.lease_attempt(&key, None, browser.actor).await? {
            Ok(lease) => lease,
            Err(refused) => return Ok(refused),
        };
        let result = self
            .verify_code(form, step, code, &key, &mut lease, browser)
            .await;
        if result.is_err() && lease.release().await {
            self.refund_ip(browser.ip);
        }
        result
    }

    /// The key of the account's second-factor counter (apart from the password's, which
    /// is keyed by the name typed).
    pub(super) fn second_factor_key(&self, user: UserId) -> String {
        self.throttle_keys
            .key(None, &format!("second-factor:{}", user.0))
    }

    async fn verify_code(
        &self,
        form: &LiveForm,
        step: &SecondStep,
        code: &str,
        key: &str,
        lease: &mut Lease,
        browser: &Browser<'_>,
    ) -> Result<LoginOutcome, LoginError> {
        let now = self.clock.now();
        // SECURITY: after a wrong password the code goes through the same reads and
        // cryptography (nothing spent, never accepted), so neither the answer nor its
        // timing says which step failed.
        let checked = if step.password_ok {
            self.factors
                .check(step.user_id, code, now, browser.actor)
                .await?
        } else {
            Err(self
                .factors
                .check_without_effect(step.user_id, code, now)
                .await?)
        };
        match checked {
            Err(CodeRejection::Malformed) => {
                // Not an attempt at a code: nothing is counted.
                lease.release().await;
                self.refund_ip(browser.ip);
                Ok(LoginOutcome::CodeRejected(CodeRejection::Malformed))
            }
            Err(rejection) => {
                self.record_code_failure(step, rejection, key, lease, browser, now)
                    .await
            }
            Ok(used) => {
                self.complete_second_factor(form, step, used, key, lease, browser, now)
                    .await
            }
        }
    }

    /// A wrong or replayed code (or any code after a wrong password): counted towards the
    /// account's lockout and audited.
    pub(super) async fn record_code_failure(
        &self,
        step: &SecondStep,
        rejection: CodeRejection,
        key: &str,
        lease: &mut Lease,
        browser: &Browser<'_>,
        now: OffsetDateTime,
    ) -> Result<LoginOutcome, LoginError> {
        let state = self
            .store
            .record_login_failure(key, lease.id, now, &self.throttle)
            .await?;
        lease.settled();
        let reason = match (step.password_ok, rejection) {
            (false, _) => "bad_password",
            (true, CodeRejection::Replayed) => "replayed_code",
            (true, _) => "wrong_code",
        };
        let user = self.store.find_user_by_id(step.user_id).await?;
        let audit = AuditEvent::new(
            now,
            AuditKind::SecondFactorFailure,
            Outcome::Failure,
            browser.actor,
        )
        .detail("reason", reason)
        .detail("failures", state.failures);
        let audit = name_user(audit, user.as_ref());
        self.store
            .record_audit(&with_lock(audit, &state, "second_factor_locked", now))
            .await?;
        Ok(match state.locked_until {
            Some(until) => LoginOutcome::Throttled {
                retry_after: crate::domain::throttle::retry_after_secs(now, until),
            },
            None => LoginOutcome::CodeRejected(CodeRejection::Wrong),
        })
    }

    /// Both factors passed: a new session, or the stepped-up one.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn complete_second_factor(
        &self,
        form: &LiveForm,
        step: &SecondStep,
        used: SecondFactorUsed,
        key: &str,
        lease: &mut Lease,
        browser: &Browser<'_>,
        now: OffsetDateTime,
    ) -> Result<LoginOutcome, LoginError> {
        let password_at = OffsetDateTime::from_unix_timestamp(step.password_at).unwrap_or(now);
        let factors = match used {
            // A passkey is possession of a key; with user verification, also `user`.
            SecondFactorUsed::Passkey { user_verified, .. } => {
                let factors = SessionFactors::password(password_at).with(AMR_HWK, now);
                if user_verified {
                    factors.with(AMR_USER, now)
                } else {
                    factors
                }
            }
            _ => SessionFactors::password(password_at).with(AMR_OTP, now),
        };
        let method = match used {
            SecondFactorUsed::Totp { .. } => "totp",
            SecondFactorUsed::RecoveryCode { .. } => "recovery_code",
            SecondFactorUsed::Passkey { .. } => "passkey",
        };
        if let Some(session) = step.step_up {
            let audit = AuditEvent::new(
                now,
                AuditKind::LoginSuccess,
                Outcome::Success,
                browser.actor,
            )
            .user(step.user_id)
            .session(session)
            .detail("amr", factors.amr())
            .detail("second_factor", method)
            .detail("step_up", true);
            let done = self
                .store
                .complete_step_up(
                    &CompletedStepUp {
                        transaction: form.transaction.id_hash,
                        session,
                        factors: &factors,
                        auth_time: now,
                        throttle_key: key,
                        lease: lease.id,
                        audit: &audit,
                    },
                    now,
                )
                .await?;
            if !done {
                return Err(LoginError::Expired);
            }
            lease.settled();
            self.refund_ip(browser.ip);
            return Ok(LoginOutcome::SteppedUp {
                return_to: return_to(&form.transaction),
            });
        }
        let (Some(user), Some(hash)) = (
            self.store.find_user_by_id(step.user_id).await?,
            step.verified_hash.clone(),
        ) else {
            return Err(LoginError::Expired);
        };
        let verified = Verified {
            transaction: &form.transaction,
            user,
            credential: Credential::Password(PasswordHash(hash)),
            rehash: None,
            factors,
            also_clear: step.password_key.as_deref(),
            second_factor: Some(method),
        };
        self.create_session(verified, key, lease, browser, now)
            .await
    }
}
