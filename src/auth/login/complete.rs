//! The last step of a successful sign-in: the session is created, the transaction
//! consumed, the account's failures cleared and the success audited, all in one store
//! call; then a stale password hash is upgraded off the request path.

use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditKind, Outcome};
use crate::domain::mfa::SessionFactors;
use crate::domain::secret::OpaqueToken;
use crate::domain::session::{BrowserSession, MAX_USER_AGENT_LEN, SessionId};
use crate::domain::user::{Password, PasswordHash, User, UserId};
use crate::storage::{
    CompletedLogin, LoginTransaction, NewSession, PasswordChange, VerifiedCredential,
};

use super::super::Authenticator;
use super::lease::Lease;
use super::outcome::{LoginError, LoginOutcome};
use super::request::Browser;
use super::transaction::return_to;

/// The credential a sign-in was verified with.
pub(super) enum Credential {
    Password(PasswordHash),
    /// A passkey's factor id (a sign-in without a password).
    Passkey(uuid::Uuid),
}

/// A verified attempt, ready to become a session.
pub(super) struct Verified<'a> {
    pub transaction: &'a LoginTransaction,
    pub user: User,
    /// What was verified (a password by its hash, or a passkey).
    pub credential: Credential,
    /// The password again, when its stored hash should be upgraded.
    pub rehash: Option<Password>,
    /// The factors the session is created with.
    pub factors: SessionFactors,
    /// The password's counter, when the attempt leased here was the second factor's.
    pub also_clear: Option<&'a str>,
    /// How the second factor was given (`totp`, `recovery_code`), if one was.
    pub second_factor: Option<&'static str>,
}

impl Authenticator {
    /// Creates the session and consumes the transaction; `LoginError::Expired` if the
    /// transaction was consumed or expired meanwhile.
    pub(super) async fn create_session(
        &self,
        verified: Verified<'_>,
        key: &str,
        lease: &mut Lease,
        browser: &Browser<'_>,
        now: OffsetDateTime,
    ) -> Result<LoginOutcome, LoginError> {
        let Verified {
            transaction,
            user,
            credential,
            rehash,
            factors,
            also_clear,
            second_factor,
        } = verified;
        let cookie = OpaqueToken::generate();
        let amr = factors.amr();
        let new_session = NewSession {
            id_hash: cookie.hash(),
            session: self.new_session(&user, browser, now, factors),
        };
        let audit = AuditEvent::new(
            now,
            AuditKind::LoginSuccess,
            Outcome::Success,
            browser.actor,
        )
        .user(user.id)
        .session(new_session.session.id)
        .detail("amr", amr);
        let audit = match second_factor {
            Some(method) => audit.detail("second_factor", method),
            None => audit,
        };
        let completed = self
            .store
            .complete_login(
                &CompletedLogin {
                    transaction: transaction.id_hash,
                    session: &new_session,
                    throttle_key: key,
                    lease: lease.id,
                    replaces: browser.replaces,
                    verified: match &credential {
                        Credential::Password(hash) => VerifiedCredential::Password(hash),
                        Credential::Passkey(factor) => VerifiedCredential::Passkey(*factor),
                    },
                    audit: &audit,
                    also_clear,
                    second_step: second_factor.is_some(),
                },
                now,
            )
            .await?;
        if !completed {
            return Err(LoginError::Expired);
        }
        lease.settled();
        self.refund_ip(browser.ip);
        if let (Some(password), Credential::Password(hash)) = (rehash, credential) {
            self.upgrade_hash_in_background(user.id, password, hash);
        }
        Ok(LoginOutcome::Success {
            cookie,
            session: Box::new(new_session.session),
            return_to: return_to(transaction),
        })
    }

    /// A session for `user` authenticated with `factors`, starting now.
    fn new_session(
        &self,
        user: &User,
        browser: &Browser<'_>,
        now: OffsetDateTime,
        factors: SessionFactors,
    ) -> BrowserSession {
        let (idle_expires_at, absolute_expires_at) = self.sessions.expiry_for_new(now);
        BrowserSession {
            id: SessionId::new(),
            user_id: user.id,
            auth_time: now,
            amr: factors.amr(),
            factors,
            created_at: now,
            last_seen_at: now,
            idle_expires_at,
            absolute_expires_at,
            ip: browser.ip.map(|ip| ip.to_string()),
            user_agent: browser.user_agent.map(truncate_user_agent),
        }
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

fn truncate_user_agent(ua: &str) -> String {
    let mut end = ua.len().min(MAX_USER_AGENT_LEN);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].to_owned()
}
