//! After validation: sign-in, consent, or a code for the client (OpenID Connect Core
//! §3.1.2.3 to §3.1.2.5), and the error replies of `prompt=none` (Core §3.1.2.6).

use super::RESUME_PATH;
use super::reply::{AuthorizeOutcome, already_answered};
use super::request::AuthorizationRequest;
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::auth::CurrentSession;
use crate::domain::client::Client;
use crate::domain::mfa::AuthLevel;
use crate::domain::pkce::CodeChallenge;
use crate::domain::secret::{OpaqueToken, TokenHash, kind};
use crate::oauth::Provider;
use crate::oauth::error::{EndpointError, ErrorCode, OAuthError};
use crate::storage::{AuthorizationCodeRecord, IssueCode, LoginTransaction};
use time::OffsetDateTime;

/// Where a request needs the user before a code can be issued.
#[derive(Debug, Clone, Copy)]
enum Interaction {
    Login,
    Consent,
}

impl Provider {
    /// Decides between sign-in, consent and issuing a code (OpenID Connect Core §3.1.2.3,
    /// §3.1.2.4).
    pub(super) async fn proceed(
        &self,
        client: &Client,
        request: AuthorizationRequest,
        session: Option<&CurrentSession>,
        pending: Option<(OpaqueToken<kind::LoginTransaction>, LoginTransaction)>,
        binding: &OpaqueToken<kind::BrowserBinding>,
        actor: &Actor,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        let signed_in_here = pending.as_ref().and_then(|(_, t)| t.session_id);
        if self.needs_login(&request, session, signed_in_here) {
            return self
                .interact(&request, pending, binding, actor, Interaction::Login)
                .await;
        }
        let Some(session) = session else {
            return Ok(AuthorizeOutcome::Refused("Please sign in again.".into()));
        };
        // OpenID Connect Core §5.5.1: a `sub` asked for with a value allows a positive
        // response only when that End-User is authenticated; someone else signed in here.
        if !request.allows_subject(&session.user.id.to_string()) {
            return self
                .answer_error(
                    &request,
                    pending.as_ref(),
                    ErrorCode::AccessDenied,
                    "the user who signed in is not the one the claims parameter's sub names",
                    actor,
                )
                .await;
        }
        // The level the request needs (acr_values, an essential acr, the client's or the
        // deployment's policy): a session below it steps up, never issues at less.
        if self
            .needed_level(client, &request)
            .is_some_and(|needed| session.level() < needed)
        {
            return self
                .step_up(client, &request, session, pending, binding, actor)
                .await;
        }
        if self.needs_consent(client, &request, session).await? {
            return self
                .interact(&request, pending, binding, actor, Interaction::Consent)
                .await;
        }
        let tx_hash = pending.as_ref().map(|(tx, _)| tx.hash());
        self.issue_code(client, &request, session, tx_hash.as_ref(), false, actor)
            .await
    }

    /// The level a session must reach for this request: what the request asked for,
    /// raised by the client's `require_mfa` and the deployment's `login.require_mfa` as
    /// they are now. A user who cannot reach it is never given less.
    pub(super) fn needed_level(
        &self,
        client: &Client,
        request: &AuthorizationRequest,
    ) -> Option<AuthLevel> {
        let policy =
            (client.require_mfa || self.auth.require_mfa).then_some(AuthLevel::MultiFactor);
        request.min_level.max(policy)
    }

    /// The session is below the level the request needs: ask for the missing factor
    /// (only that: the password is not asked again), or, when the user has none, tell
    /// them what to set up. With `prompt=none` the client gets `login_required`.
    async fn step_up(
        &self,
        client: &Client,
        request: &AuthorizationRequest,
        session: &CurrentSession,
        pending: Option<(OpaqueToken<kind::LoginTransaction>, LoginTransaction)>,
        binding: &OpaqueToken<kind::BrowserBinding>,
        actor: &Actor,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        if request.prompt_none {
            return self
                .answer_error(
                    request,
                    pending.as_ref(),
                    ErrorCode::LoginRequired,
                    "the request needs multi-factor authentication",
                    actor,
                )
                .await;
        }
        if !self.auth.factors.has_any(session.user.id).await? {
            return Ok(AuthorizeOutcome::Refused(format!(
                "{} requires two-step verification, and your account has no second factor \
                 yet. Set up an authenticator app on your account page (/account), then \
                 return to {} and sign in again.",
                client.name, client.name
            )));
        }
        let tx = self.pending_tx(request, pending, binding, actor).await?;
        if !self
            .auth
            .begin_step_up(&tx.hash(), &session.session)
            .await?
        {
            return Ok(AuthorizeOutcome::Refused(
                "This sign-in request has expired. Please return to the application and start \
                 again."
                    .into(),
            ));
        }
        Ok(AuthorizeOutcome::Login { tx })
    }

    /// OpenID Connect Core §3.1.2.1 and §3.1.2.4: prompt=consent asks even a first-party
    /// client's user; otherwise a first-party client is granted what it asks for,
    /// including offline_access (Core §11 allows other conditions permitting offline
    /// access), and a third-party client needs consent to all it asks for.
    async fn needs_consent(
        &self,
        client: &Client,
        request: &AuthorizationRequest,
        session: &CurrentSession,
    ) -> Result<bool, EndpointError> {
        let consented = self
            .store
            .find_consent(session.user.id, &client.id)
            .await?
            .unwrap_or_default();
        Ok(request.prompt_consent
            || (!client.first_party && !request.consent_scope().is_subset(&consented)))
    }

    /// Parks the request and sends the user to sign in or consent. With `prompt=none` the
    /// client gets `login_required` or `consent_required` instead (OpenID Connect Core
    /// §3.1.2.6).
    async fn interact(
        &self,
        request: &AuthorizationRequest,
        pending: Option<(OpaqueToken<kind::LoginTransaction>, LoginTransaction)>,
        binding: &OpaqueToken<kind::BrowserBinding>,
        actor: &Actor,
        interaction: Interaction,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        if request.prompt_none {
            let (code, description) = match interaction {
                Interaction::Login => (ErrorCode::LoginRequired, "the user must sign in"),
                Interaction::Consent => (ErrorCode::ConsentRequired, "the user must consent"),
            };
            return self
                .answer_error(request, pending.as_ref(), code, description, actor)
                .await;
        }
        let tx = self.pending_tx(request, pending, binding, actor).await?;
        Ok(match interaction {
            Interaction::Login => AuthorizeOutcome::Login { tx },
            Interaction::Consent => AuthorizeOutcome::Consent { tx },
        })
    }

    /// The transaction to park the request in: the current one, or a new one.
    async fn pending_tx(
        &self,
        request: &AuthorizationRequest,
        pending: Option<(OpaqueToken<kind::LoginTransaction>, LoginTransaction)>,
        binding: &OpaqueToken<kind::BrowserBinding>,
        actor: &Actor,
    ) -> Result<OpaqueToken<kind::LoginTransaction>, EndpointError> {
        if let Some((tx, _)) = pending {
            return Ok(tx);
        }
        // Each parked request is a row: the same per-address cap as sign-in forms.
        let ip = actor.ip.as_deref().and_then(|ip| ip.parse().ok());
        if let Err(retry_after) = self.auth.may_open_form(ip) {
            return Err(EndpointError::Throttled { retry_after });
        }
        let value =
            serde_json::to_value(request).map_err(|e| EndpointError::Internal(e.to_string()))?;
        Ok(self
            .auth
            .start_login(binding, RESUME_PATH, Some(value))
            .await?)
    }

    /// An error for the client (RFC 6749 §4.1.2.1); a parked transaction is finished, so
    /// it cannot be answered twice.
    async fn answer_error(
        &self,
        request: &AuthorizationRequest,
        pending: Option<&(OpaqueToken<kind::LoginTransaction>, LoginTransaction)>,
        code: ErrorCode,
        description: &str,
        actor: &Actor,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        if let Some((tx, _)) = pending {
            let audit = AuditEvent::new(
                self.clock.now(),
                AuditKind::AuthorizationDenied,
                Outcome::Failure,
                actor,
            )
            .client(&request.client_id)
            .detail("error", code.as_str());
            self.store
                .finish_authorization(&tx.hash(), self.clock.now(), &audit)
                .await?;
        }
        Ok(AuthorizeOutcome::Reply(
            self.error_reply(request, OAuthError::new(code, description)),
        ))
    }

    /// RFC 6749 §4.1.2: issues a code for `session` and answers the client with it. With
    /// `tx`, the parked transaction is finished in the same statement, so a request is
    /// answered once; `consent_given` records the consent too.
    pub(super) async fn issue_code(
        &self,
        client: &Client,
        request: &AuthorizationRequest,
        session: &CurrentSession,
        tx: Option<&TokenHash<kind::LoginTransaction>>,
        consent_given: bool,
        actor: &Actor,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        let now = self.clock.now();
        let code = OpaqueToken::generate();
        let record = AuthorizationCodeRecord {
            code_hash: code.hash(),
            client_id: client.id.clone(),
            user_id: session.user.id,
            session_id: session.session.id,
            redirect_uri: request.redirect_uri.to_string(),
            scope: request.scope.clone(),
            nonce: request.nonce.clone(),
            code_challenge: Some(&request.code_challenge)
                .filter(|c| !c.is_empty())
                .map(|c| CodeChallenge::from_trusted(c.clone())),
            auth_time: session.session.auth_time,
            amr: session.session.amr.clone(),
            claims: request.claims.clone(),
            created_at: now,
            expires_at: now + self.code_lifetime,
        };
        let consent_scope = request.consent_scope();
        let audit = code_audit(client, request, session, consent_given, actor, now);
        let issued = self
            .store
            .issue_code(
                &IssueCode {
                    transaction: tx.copied(),
                    consent: consent_given.then_some(&consent_scope),
                    code: &record,
                    audit: &audit,
                },
                now,
            )
            .await?;
        if !issued {
            return Ok(already_answered());
        }
        Ok(AuthorizeOutcome::Reply(
            self.code_reply(request, code.expose()),
        ))
    }
}

/// The audit trail of an issued code, and of the consent given with it.
fn code_audit(
    client: &Client,
    request: &AuthorizationRequest,
    session: &CurrentSession,
    consent_given: bool,
    actor: &Actor,
    now: OffsetDateTime,
) -> Vec<AuditEvent> {
    let mut issued = AuditEvent::new(now, AuditKind::CodeIssued, Outcome::Success, actor)
        .user(session.user.id)
        .session(session.session.id)
        .client(client.id.as_str())
        .detail("scope", request.scope.to_string());
    if !request.claims.is_empty() {
        issued = issued.detail(
            "claims",
            serde_json::to_value(&request.claims).unwrap_or_default(),
        );
    }
    let mut audit = vec![issued];
    if consent_given {
        audit.push(
            AuditEvent::new(now, AuditKind::ConsentGranted, Outcome::Success, actor)
                .user(session.user.id)
                .client(client.id.as_str())
                .detail("scope", request.consent_scope().to_string()),
        );
    }
    audit
}
