//! A request parked while the user signs in or consents: finding it again (only from the
//! browser that started it, and only while its client still allows it), deciding whether
//! sign-in is still due, and the user's answer on the consent page.

use super::RESUME_PATH;
use super::reply::{AuthorizeOutcome, already_answered};
use super::request::AuthorizationRequest;
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::auth::CurrentSession;
use crate::domain::client::{Client, GrantType};
use crate::domain::secret::{OpaqueToken, kind};
use crate::oauth::Provider;
use crate::oauth::error::{EndpointError, ErrorCode, OAuthError};
use crate::storage::LoginTransaction;

/// A pending authorization: the transaction, its request and its client.
#[derive(Debug)]
pub struct Pending {
    pub tx: OpaqueToken<kind::LoginTransaction>,
    pub transaction: LoginTransaction,
    pub request: AuthorizationRequest,
    pub client: Client,
}

impl Provider {
    /// The pending authorization `tx`, if it was started in this browser.
    pub async fn pending(
        &self,
        tx: &OpaqueToken<kind::LoginTransaction>,
        binding: &OpaqueToken<kind::BrowserBinding>,
    ) -> Result<Option<Pending>, EndpointError> {
        let Some(transaction) = self
            .store
            .find_pending_authorization(&tx.hash(), self.clock.now())
            .await?
        else {
            return Ok(None);
        };
        // SECURITY: only the browser that started the request can continue it.
        let bound = bool::from(subtle::ConstantTimeEq::ct_eq(
            transaction.binding_hash.as_bytes(),
            binding.hash().as_bytes(),
        ));
        let Some(request) = transaction
            .request
            .clone()
            .filter(|_| bound)
            .and_then(|v| serde_json::from_value::<AuthorizationRequest>(v).ok())
        else {
            return Ok(None);
        };
        let Some(client) = self.find_client(&request.client_id).await? else {
            return Ok(None);
        };
        // The registration may have changed while the request waited (or the client
        // was disabled meanwhile).
        if client.disabled
            || !client.redirect_uri_matches(request.redirect_uri.as_str())
            || !client.allows_grant(GrantType::AuthorizationCode)
            || !request.consent_scope().is_subset(&client.scopes)
            || (request.code_challenge.is_empty() && client.pkce_required())
        {
            return Ok(None);
        }
        Ok(Some(Pending {
            tx: tx.duplicate(),
            transaction,
            request,
            client,
        }))
    }

    /// Whether `session` falls short of what the request demands: none at all, or (unless
    /// the user signed in within this very transaction) too old for `max_age`, a forced
    /// `prompt=login`, or another user than `id_token_hint` names.
    pub fn needs_login(
        &self,
        request: &AuthorizationRequest,
        session: Option<&CurrentSession>,
        signed_in_here: Option<crate::domain::session::SessionId>,
    ) -> bool {
        let Some(s) = session else { return true };
        if signed_in_here == Some(s.session.id) {
            return false;
        }
        // OpenID Connect Core §3.1.2.1. Timestamps are whole seconds, so an elapsed time
        // equal to max_age may really be up to a second more: re-authenticate then too.
        let too_old = request
            .max_age
            .is_some_and(|max| (self.clock.now() - s.session.auth_time).whole_seconds() >= max);
        let subject = s.user.id.to_string();
        let other_user = request.hint_sub.as_ref().is_some_and(|sub| *sub != subject)
            || !request.allows_subject(&subject);
        request.prompt_login || too_old || other_user
    }

    /// Where a pending request must go before consent can be asked: `Some(path)` when
    /// sign-in is still required (or the client needs no consent at all).
    pub fn consent_detour(&self, pending: &Pending, session: &CurrentSession) -> Option<String> {
        let tx = pending.tx.expose();
        if self.needs_login(
            &pending.request,
            Some(session),
            pending.transaction.session_id,
        ) {
            return Some(format!("/login?tx={tx}"));
        }
        // Someone else than the `claims` parameter's `sub` names signed in here, or the
        // session is below the level the request needs: the authorization endpoint
        // answers (with the error, or a step-up).
        let below = self
            .needed_level(&pending.client, &pending.request)
            .is_some_and(|needed| session.level() < needed);
        if below || !pending.request.allows_subject(&session.user.id.to_string()) {
            return Some(format!("{RESUME_PATH}?tx={tx}"));
        }
        // A first-party client needs no consent page, unless the request asks for one
        // (OpenID Connect Core §3.1.2.1, prompt=consent).
        if pending.client.first_party && !pending.request.prompt_consent {
            return Some(format!("{RESUME_PATH}?tx={tx}"));
        }
        None
    }

    /// The user's answer on the consent page.
    pub async fn decide_consent(
        &self,
        pending: Pending,
        session: &CurrentSession,
        allow: bool,
        actor: &Actor,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        // SECURITY: consent never stands in for a sign-in the request still demands.
        if self.consent_detour(&pending, session).is_some() {
            return Ok(AuthorizeOutcome::Refused(
                "This request needs you to sign in first. Please return to the application \
                 and start again."
                    .into(),
            ));
        }
        let now = self.clock.now();
        let Pending {
            tx,
            request,
            client,
            ..
        } = pending;
        if allow {
            return self
                .issue_code(&client, &request, session, Some(&tx.hash()), true, actor)
                .await;
        }
        let audit = AuditEvent::new(now, AuditKind::ConsentDenied, Outcome::Failure, actor)
            .user(session.user.id)
            .client(client.id.as_str())
            .detail("scope", request.consent_scope().to_string());
        if !self
            .store
            .finish_authorization(&tx.hash(), now, &audit)
            .await?
        {
            return Ok(already_answered());
        }
        Ok(AuthorizeOutcome::Reply(self.error_reply(
            &request,
            OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
        )))
    }
}
