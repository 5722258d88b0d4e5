//! Passkeys at sign-in, on the login transaction of the form (the same tx and CSRF token
//! as the password form): the options of a ceremony, then the assertion posted back.
//!
//! Without a password (no second step on the transaction): any discoverable credential
//! with user verification signs its account in, with `amr` `hwk` + `user` (hence `mfa`).
//! As the second step: the user's credentials only. Its checks mirror the code's
//! (`second_factor.rs`): SECURITY: after a wrong password the assertion is never looked
//! at and the answer is the one a wrong passkey gets.
//!
//! Checks, in order: the form is live (1); the response is a WebAuthn response (2); the
//! per-address limit (3); the ceremony state of the transaction, taken once (4); the
//! registered credential it names (5); a lease on the account's budget (6: the
//! password's counter without a password, the second factor's as the second step); the
//! assertion (7, WebAuthn Level 3 §7.2); the session (8).

use time::OffsetDateTime;
use webauthn_rs::prelude::{PublicKeyCredential, RequestChallengeResponse};

use crate::audit::{AuditEvent, AuditKind, Outcome};
use crate::auth::{CeremonyState, PasskeyProblem, SecondFactorUsed, parse_assertion};
use crate::domain::mfa::{CodeRejection, SessionFactors};
use crate::domain::secret::{OpaqueToken, kind};
use crate::storage::{LoginTransaction, PasskeyRecord};

use super::super::Authenticator;
use super::complete::{Credential, Verified};
use super::lease::Lease;
use super::name_user;
use super::outcome::{LiveForm, LoginError, LoginFailure, LoginOutcome, SignInOutcome};
use super::request::Browser;

/// A posted passkey form: the transaction, its CSRF token and the credential's response
/// (JSON, as `passkeys.js` serialises `PublicKeyCredential`).
#[derive(Debug, serde::Deserialize)]
pub struct PasskeyForm {
    pub tx: String,
    pub csrf_token: String,
    #[serde(default)]
    pub credential: String,
}

/// The options request of a sign-in form.
#[derive(Debug, serde::Deserialize)]
pub struct PasskeyOptionsForm {
    pub tx: String,
    pub csrf_token: String,
}

/// The owner of the ceremony of a sign-in form: its transaction.
fn owner(transaction: &LoginTransaction) -> String {
    let hex: String = transaction
        .id_hash
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("login:{hex}")
}

impl Authenticator {
    /// `POST /login/passkey/options`: the options for `navigator.credentials.get()`,
    /// bound to the transaction; `None` when the form is not live (or, as the second
    /// step, the user has no passkey).
    pub async fn passkey_options(
        &self,
        form: PasskeyOptionsForm,
        browser: &Browser<'_>,
    ) -> Result<Option<RequestChallengeResponse>, LoginError> {
        let tx = OpaqueToken::<kind::LoginTransaction>::parse(&form.tx);
        let Some(live) = self.live_form(tx, &form.csrf_token, browser).await? else {
            return Ok(None);
        };
        let user = live.transaction.second_step.as_ref().map(|s| s.user_id);
        Ok(self
            .factors
            .begin_passkey_authentication(owner(&live.transaction), user, self.clock.now())
            .await?)
    }

    /// `POST /login/passkey`: the checks above, in order.
    pub async fn passkey_sign_in(
        &self,
        form: PasskeyForm,
        browser: &Browser<'_>,
    ) -> Result<SignInOutcome, LoginError> {
        let tx = OpaqueToken::<kind::LoginTransaction>::parse(&form.tx);
        let Some(live) = self.live_form(tx, &form.csrf_token, browser).await? else {
            let fresh = self.open_form(browser.binding, browser.ip).await?;
            return Ok(SignInOutcome::Expired(fresh));
        };
        let outcome = match parse_assertion(&form.credential) {
            Err(problem) => LoginOutcome::PasskeyRejected(problem),
            Ok(response) => self.check_passkey(&live, &response, browser).await?,
        };
        Ok(SignInOutcome::Checked {
            form: Box::new(live),
            username: String::new(),
            outcome,
        })
    }

    /// Checks 3 to 8.
    async fn check_passkey(
        &self,
        live: &LiveForm,
        response: &PublicKeyCredential,
        browser: &Browser<'_>,
    ) -> Result<LoginOutcome, LoginError> {
        let now = self.clock.now();
        if let Err(refused) = self.ip_limit(browser, now).await? {
            return Ok(refused);
        }
        let taken = self
            .factors
            .take_ceremony(&owner(&live.transaction), now)
            .await?;
        let Some((ceremony_user, state)) = taken else {
            // Not an attempt at a credential: nothing is counted.
            self.refund_ip(browser.ip);
            return Ok(LoginOutcome::PasskeyRejected(PasskeyProblem::NoCeremony));
        };
        let record = self.factors.passkey_of(response).await?;
        let step = live.transaction.second_step.clone();
        // The account whose budget the attempt counts against.
        let user = match (&step, &record) {
            (Some(step), _) => step.user_id,
            (None, Some(record)) => record.factor.user_id,
            (None, None) => {
                // A credential nobody registered: no account to count it against.
                self.audit_passkey_failure(None, "unknown_passkey", None, browser, now)
                    .await?;
                return Ok(LoginOutcome::PasskeyRejected(PasskeyProblem::Rejected));
            }
        };
        let Some(account) = self.store.find_user_by_id(user).await? else {
            return Ok(LoginOutcome::PasskeyRejected(PasskeyProblem::Rejected));
        };
        let key = match step {
            Some(_) => self.second_factor_key(user),
            None => self.throttle_keys.of_user(&account.username),
        };
        let username = (step.is_none()).then_some(&account.username);
        let mut lease = match self.lease_attempt(&key, username, browser.actor).await? {
            Ok(lease) => lease,
            Err(refused) => return Ok(refused),
        };
        let attempt = PasskeyAttempt {
            live,
            state,
            ceremony_user,
            record: record.as_ref(),
            response,
            key: &key,
            browser,
        };
        let result = match &step {
            Some(step) => {
                self.passkey_second_step(attempt, step, &mut lease, now)
                    .await
            }
            None => {
                self.passkey_without_password(attempt, account, &mut lease, now)
                    .await
            }
        };
        if result.is_err() && lease.release().await {
            self.refund_ip(browser.ip);
        }
        result
    }

    /// Check 7 and 8 of a sign-in without a password.
    async fn passkey_without_password(
        &self,
        attempt: PasskeyAttempt<'_>,
        account: crate::domain::user::User,
        lease: &mut Lease,
        now: OffsetDateTime,
    ) -> Result<LoginOutcome, LoginError> {
        let verified = match (attempt.record, &attempt.state) {
            (Some(record), CeremonyState::Discoverable(_)) if !account.disabled => {
                self.factors
                    .verify_passkey(attempt.state, record, attempt.response, now, true)
                    .await?
            }
            _ => None,
        };
        let Some(used) = verified else {
            let reason = if account.disabled {
                LoginFailure::Disabled.reason()
            } else {
                "invalid_passkey"
            };
            let state = self
                .store
                .record_login_failure(attempt.key, lease.id, now, &self.throttle)
                .await?;
            lease.settled();
            return self
                .passkey_failure_outcome(Some(&account), reason, state, attempt.browser, now)
                .await;
        };
        let verified = Verified {
            transaction: &attempt.live.transaction,
            user: account,
            credential: Credential::Passkey(used.factor),
            rehash: None,
            factors: SessionFactors::passkey(now),
            also_clear: None,
            // Not a second factor: the `amr` (hwk, user) says it was a passkey.
            second_factor: None,
        };
        self.create_session(verified, attempt.key, lease, attempt.browser, now)
            .await
    }

    /// Checks 7 and 8 as the second step (mirrors `verify_code`).
    async fn passkey_second_step(
        &self,
        attempt: PasskeyAttempt<'_>,
        step: &crate::domain::second_step::SecondStep,
        lease: &mut Lease,
        now: OffsetDateTime,
    ) -> Result<LoginOutcome, LoginError> {
        // SECURITY: after a wrong password the assertion goes through the same
        // verification with its result discarded (nothing recorded, never accepted), so
        // neither the answer nor its timing tells a wrong passkey from a wrong password.
        let verified = match (attempt.record, &attempt.state) {
            (Some(record), CeremonyState::SecondFactor(_))
                if record.factor.user_id == step.user_id
                    && attempt.ceremony_user == Some(step.user_id) =>
            {
                self.factors
                    .verify_passkey(
                        attempt.state,
                        record,
                        attempt.response,
                        now,
                        step.password_ok,
                    )
                    .await?
            }
            _ => None,
        };
        match verified {
            None => {
                let outcome = self
                    .record_code_failure(
                        step,
                        CodeRejection::Wrong,
                        attempt.key,
                        lease,
                        attempt.browser,
                        now,
                    )
                    .await?;
                Ok(match outcome {
                    LoginOutcome::CodeRejected(_) => {
                        LoginOutcome::PasskeyRejected(PasskeyProblem::Rejected)
                    }
                    other => other,
                })
            }
            Some(used) => {
                let used = SecondFactorUsed::Passkey {
                    factor: used.factor,
                    user_verified: used.user_verified,
                };
                self.complete_second_factor(
                    attempt.live,
                    step,
                    used,
                    attempt.key,
                    lease,
                    attempt.browser,
                    now,
                )
                .await
            }
        }
    }

    /// Audits a failed passkey sign-in without a password; the lockout may start now.
    async fn passkey_failure_outcome(
        &self,
        user: Option<&crate::domain::user::User>,
        reason: &str,
        state: crate::domain::throttle::ThrottleState,
        browser: &Browser<'_>,
        now: OffsetDateTime,
    ) -> Result<LoginOutcome, LoginError> {
        self.audit_passkey_failure(user, reason, Some(&state), browser, now)
            .await?;
        Ok(match state.locked_until {
            Some(until) => LoginOutcome::Throttled {
                retry_after: crate::domain::throttle::retry_after_secs(now, until),
            },
            None => LoginOutcome::PasskeyRejected(PasskeyProblem::Rejected),
        })
    }

    async fn audit_passkey_failure(
        &self,
        user: Option<&crate::domain::user::User>,
        reason: &str,
        state: Option<&crate::domain::throttle::ThrottleState>,
        browser: &Browser<'_>,
        now: OffsetDateTime,
    ) -> Result<(), LoginError> {
        let audit = AuditEvent::new(
            now,
            AuditKind::LoginFailure,
            Outcome::Failure,
            browser.actor,
        )
        .detail("reason", reason)
        .detail("method", "passkey");
        let audit = match state {
            Some(s) => audit.detail("failures", s.failures),
            None => audit,
        };
        let audit = name_user(audit, user);
        let mut events = vec![audit.clone()];
        if let Some(until) = state.and_then(|s| s.locked_until) {
            let mut locked = audit;
            locked.kind = AuditKind::LoginThrottled;
            events.push(
                locked
                    .detail("reason", "account_locked")
                    .detail("locked_seconds", (until - now).whole_seconds()),
            );
        }
        self.store.record_audit(&events).await?;
        Ok(())
    }
}

/// One passkey attempt past its lease.
struct PasskeyAttempt<'a> {
    live: &'a LiveForm,
    state: CeremonyState,
    ceremony_user: Option<crate::domain::user::UserId>,
    record: Option<&'a PasskeyRecord>,
    response: &'a PublicKeyCredential,
    key: &'a str,
    browser: &'a Browser<'a>,
}
