//! The session behind a login cookie: lookup with idle/absolute expiry, activity
//! tracking, sign-out of one or all sessions.

use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::ClientId;
use crate::domain::secret::{OpaqueToken, kind};
use crate::domain::session::{BrowserSession, SessionId};
use crate::domain::user::User;
use crate::storage::StoreError;

use super::Authenticator;

/// The signed-in user of a request and the cookie value that proved it.
#[derive(Debug)]
pub struct CurrentSession {
    pub token: OpaqueToken<kind::SessionToken>,
    pub session: BrowserSession,
    pub user: User,
}

impl CurrentSession {
    /// The synchronizer CSRF token for forms shown to this session: derived from the
    /// session secret, so only a holder of the cookie can know it.
    pub fn csrf_token(&self) -> String {
        self.token.derive("session-csrf", "")
    }

    /// The authentication level the session reached (from its `amr`).
    pub fn level(&self) -> crate::domain::mfa::AuthLevel {
        crate::domain::mfa::AuthLevel::of_amr(&self.session.amr)
    }
}

impl Authenticator {
    /// The live session behind a cookie value, if any. Records activity at most once per
    /// touch interval, never extending beyond the absolute lifetime.
    pub async fn current_session(
        &self,
        cookie: Option<&str>,
    ) -> Result<Option<CurrentSession>, StoreError> {
        let Some(token) = cookie.and_then(OpaqueToken::parse) else {
            return Ok(None);
        };
        let now = self.clock.now();
        let Some((mut session, user)) = self.store.find_session(&token.hash(), now).await? else {
            return Ok(None);
        };
        if !session.is_live(now) {
            return Ok(None);
        }
        if self.sessions.needs_touch(&session, now) {
            let idle = self
                .sessions
                .idle_expiry_after_activity(now, session.absolute_expires_at);
            self.store.touch_session(session.id, now, idle).await?;
            session.last_seen_at = now;
            session.idle_expires_at = idle;
        }
        Ok(Some(CurrentSession {
            token,
            session,
            user,
        }))
    }

    pub async fn sessions_of(
        &self,
        current: &CurrentSession,
    ) -> Result<Vec<BrowserSession>, StoreError> {
        self.store
            .list_sessions(current.user.id, self.clock.now())
            .await
    }

    /// Ends the current session (sign-out). `client` is the application that asked for it
    /// (RP-initiated logout), `via` how it was decided (`account`, `confirmation`,
    /// `id_token_hint`); both go into the audit row.
    pub async fn logout(
        &self,
        current: &CurrentSession,
        client: Option<&ClientId>,
        via: &'static str,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut audit = AuditEvent::new(now, AuditKind::Logout, Outcome::Success, actor)
            .user(current.user.id)
            .session(current.session.id)
            .detail("via", via);
        if let Some(client) = client {
            audit = audit.client(client.as_str());
        }
        self.store
            .revoke_session(current.user.id, current.session.id, now, "logout", &audit)
            .await
    }

    /// Ends another session of the same user. Sessions of other users are untouched.
    pub async fn revoke_own_session(
        &self,
        current: &CurrentSession,
        target: SessionId,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let audit = AuditEvent::new(now, AuditKind::SessionRevoked, Outcome::Success, actor)
            .user(current.user.id)
            .session(target)
            .detail("by_session", current.session.id.to_string());
        self.store
            .revoke_session(current.user.id, target, now, "user_revoked", &audit)
            .await
    }

    /// "Sign out of all sessions", including the current one.
    pub async fn revoke_all_sessions(
        &self,
        current: &CurrentSession,
        actor: &Actor,
    ) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let audit = AuditEvent::new(now, AuditKind::SessionRevoked, Outcome::Success, actor)
            .user(current.user.id)
            .session(current.session.id)
            .detail("scope", "all");
        self.store
            .revoke_user_sessions(current.user.id, now, "user_revoked_all", &audit)
            .await
    }
}
