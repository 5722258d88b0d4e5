//! The authorization endpoint (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2). Requests are
//! validated in the order the specs require: until the client and its redirect URI are
//! established nothing is ever redirected (RFC 6749 §4.1.2.1); after that, every error
//! goes back to the client with `state` and `iss` (RFC 9207). A request that needs sign-in
//! or consent waits server-side in a login transaction.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use url::Url;

use super::Provider;
use super::claims::IdTokenClaims;
use super::error::{EndpointError, ErrorCode, OAuthError};
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::auth::CurrentSession;
use crate::domain::claims::{ClaimsRequest, RequestedClaims};
use crate::domain::client::{Client, ClientId, TokenDelivery};
use crate::domain::pkce::{CodeChallenge, PkceError};
use crate::domain::refresh::OFFLINE_ACCESS;
use crate::domain::scope::{ADMIN_SCOPE, ScopeSet};
use crate::domain::secret::{OpaqueToken, TokenHash};
use crate::keys::Expectations;
use crate::storage::{AuthorizationCodeRecord, IssueCode, LoginTransaction};

/// Longest `state`, `nonce` and `login_hint` accepted.
const MAX_STATE_LEN: usize = 2048;
const MAX_NONCE_LEN: usize = 512;
const MAX_HINT_LEN: usize = 256;

/// Where sign-in returns to for a pending authorization.
pub const RESUME_PATH: &str = "/authorize/resume";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Query,
    /// OAuth 2.0 Form Post Response Mode.
    FormPost,
}

/// A validated authorization request, kept in the login transaction while the user signs
/// in or consents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: ScopeSet,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub response_mode: ResponseMode,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub prompt_consent: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// The `sub` of a valid `id_token_hint`.
    pub hint_sub: Option<String>,
    /// The claims the `claims` parameter asked for beyond the scope, limited to those of
    /// scopes the client may have (OpenID Connect Core §5.5).
    #[serde(default, skip_serializing_if = "RequestedClaims::is_empty")]
    pub claims: RequestedClaims,
    /// The subjects the `claims` parameter's `sub` value(s) allow (Core §5.5.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_sub: Option<BTreeSet<String>>,
}

impl AuthorizationRequest {
    /// What the user is asked to consent to: the scope, and the scopes whose claims the
    /// `claims` parameter asks for. Requested claims are released only once their scope
    /// has been consented to (or the client is first-party), so the consent page shows
    /// everything a client receives.
    pub fn consent_scope(&self) -> ScopeSet {
        self.scope.union(&self.claims.scopes())
    }

    /// Whether the request may be answered for the End-User `subject`: OpenID Connect
    /// Core §5.5.1, a `sub` asked for with a value allows a positive response only for
    /// that End-User.
    pub fn allows_subject(&self, subject: &str) -> bool {
        self.required_sub
            .as_ref()
            .is_none_or(|subs| subs.contains(subject))
    }
}

/// An answer for the client: its redirect URI and the parameters to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReply {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    pub params: Vec<(String, String)>,
}

impl ClientReply {
    /// The redirect URI with the parameters added to its query (query response mode).
    pub fn location(&self) -> String {
        match Url::parse(&self.redirect_uri) {
            Ok(mut url) => {
                url.query_pairs_mut().extend_pairs(&self.params);
                url.to_string()
            }
            Err(_) => self.redirect_uri.clone(),
        }
    }

    /// The CSP `form-action` source that lets a form on our pages end at this client.
    pub fn form_action_source(&self) -> Option<String> {
        form_action_source(&self.redirect_uri)
    }
}

/// `https://app.example.com` for web redirect URIs, `com.example.app:` for private-use
/// schemes: what a page's CSP must allow for a form post to end at `redirect_uri`.
pub fn form_action_source(redirect_uri: &str) -> Option<String> {
    let url = Url::parse(redirect_uri).ok()?;
    match (url.scheme(), url.host()) {
        // CSP host-sources cannot name IPv6 literals; `http:` is the narrowest source that
        // lets the redirect to a native app's `http://[::1]:port` loopback listener through.
        ("http", Some(url::Host::Ipv6(_))) => Some("http:".to_owned()),
        ("https" | "http", _) => Some(url.origin().ascii_serialization()),
        (scheme, _) => Some(format!("{scheme}:")),
    }
}

#[derive(Debug)]
pub enum AuthorizeOutcome {
    /// The client or redirect URI cannot be trusted: show this message, never redirect.
    Refused(String),
    Reply(ClientReply),
    Login {
        tx: OpaqueToken,
    },
    Consent {
        tx: OpaqueToken,
    },
}

/// A pending authorization: the transaction, its request and its client.
#[derive(Debug)]
pub struct Pending {
    pub tx: OpaqueToken,
    pub transaction: LoginTransaction,
    pub request: AuthorizationRequest,
    pub client: Client,
}

impl Provider {
    /// `GET`/`POST /authorize`.
    pub async fn authorize(
        &self,
        params: &HashMap<String, String>,
        session: Option<&CurrentSession>,
        binding: &OpaqueToken,
        actor: &Actor,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        let (client, request) = match self.validate(params).await? {
            Ok(valid) => valid,
            Err(outcome) => return Ok(outcome),
        };
        self.proceed(&client, request, session, None, binding, actor)
            .await
    }

    /// After sign-in: continue the pending authorization `tx`.
    pub async fn resume(
        &self,
        tx: &OpaqueToken,
        session: Option<&CurrentSession>,
        binding: &OpaqueToken,
        actor: &Actor,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        let Some(pending) = self.pending(tx, binding).await? else {
            return Ok(AuthorizeOutcome::Refused(
                "This sign-in request has expired or was already answered. Please return to \
                 the application and start again."
                    .into(),
            ));
        };
        let Pending {
            tx,
            transaction,
            request,
            client,
        } = pending;
        self.proceed(
            &client,
            request,
            session,
            Some((tx, transaction)),
            binding,
            actor,
        )
        .await
    }

    /// The pending authorization `tx`, if it was started in this browser.
    pub async fn pending(
        &self,
        tx: &OpaqueToken,
        binding: &OpaqueToken,
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
            || !client.redirect_uri_matches(&request.redirect_uri)
            || !client.allows_grant("authorization_code")
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
        // Someone else than the `claims` parameter's `sub` names signed in here: the
        // authorization endpoint answers the client with the error.
        if !pending.request.allows_subject(&session.user.id.to_string()) {
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

    async fn find_client(&self, raw: &str) -> Result<Option<Client>, EndpointError> {
        let Ok(id) = ClientId::parse(raw) else {
            return Ok(None);
        };
        Ok(self.store.find_client(&id).await?)
    }

    /// Validates the request; `Err(outcome)` is the refusal or error reply to send.
    async fn validate(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<Result<(Client, AuthorizationRequest), AuthorizeOutcome>, EndpointError> {
        // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let refuse = |m: &str| Ok(Err(AuthorizeOutcome::Refused(m.to_owned())));

        let Some(client_id) = get("client_id") else {
            return refuse(
                "The request does not say which application it comes from (client_id is missing).",
            );
        };
        let Some(client) = self.find_client(client_id).await? else {
            return refuse(
                "The application that sent you here is not registered with this provider.",
            );
        };
        // RFC 6749 §4.1.2.1: with an invalid client identifier the server informs the user
        // and MUST NOT redirect. A suspended client's identifier is not valid for now, and
        // its redirect URI is not one to send users to (it may be compromised), so it gets
        // this page, like an unknown client, rather than an `unauthorized_client` redirect.
        if client.disabled {
            return refuse(
                "The application that sent you here is disabled on this provider, so you \
                 cannot sign in to it for now.",
            );
        }
        let Some(redirect_uri) = get("redirect_uri") else {
            return refuse("The request has no redirect_uri.");
        };
        if !client.redirect_uri_matches(redirect_uri) {
            return refuse(
                "The redirect_uri of this request is not registered for the application, so \
                 you are not sent back to it.",
            );
        }

        // From here on, errors go back to the client.
        let state = get("state").map(str::to_owned);
        let mode = match get("response_mode") {
            None | Some("query") => Some(ResponseMode::Query),
            Some("form_post") => Some(ResponseMode::FormPost),
            Some(_) => None,
        };
        let mut request = AuthorizationRequest {
            client_id: client.id.to_string(),
            redirect_uri: redirect_uri.to_owned(),
            scope: ScopeSet::default(),
            state: state.clone().filter(|s| s.len() <= MAX_STATE_LEN),
            nonce: None,
            code_challenge: String::new(),
            response_mode: mode.unwrap_or(ResponseMode::Query),
            prompt_none: false,
            prompt_login: false,
            prompt_consent: false,
            max_age: None,
            login_hint: None,
            hint_sub: None,
            claims: RequestedClaims::default(),
            required_sub: None,
        };
        let fail = |request: &AuthorizationRequest, code, description: &str| {
            Ok(Err(AuthorizeOutcome::Reply(
                self.error_reply(request, OAuthError::new(code, description)),
            )))
        };
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
            return fail(&request, ErrorCode::InvalidRequest, "state is too long");
        }
        // RFC 6749 Appendix A.5: state is VSCHAR (%x20-7E).
        if state
            .as_ref()
            .is_some_and(|s| !s.bytes().all(|b| (0x20..=0x7e).contains(&b)))
        {
            request.state = None;
            return fail(
                &request,
                ErrorCode::InvalidRequest,
                "state must be printable ASCII",
            );
        }
        if mode.is_none() {
            return fail(
                &request,
                ErrorCode::InvalidRequest,
                "response_mode must be query or form_post",
            );
        }
        if params.contains_key("request") {
            return fail(
                &request,
                ErrorCode::RequestNotSupported,
                "request objects are not supported",
            );
        }
        if params.contains_key("request_uri") {
            return fail(
                &request,
                ErrorCode::RequestUriNotSupported,
                "request_uri is not supported",
            );
        }
        match get("response_type") {
            None => {
                return fail(
                    &request,
                    ErrorCode::InvalidRequest,
                    "response_type is required",
                );
            }
            Some("code") => {}
            Some(_) => {
                return fail(
                    &request,
                    ErrorCode::UnsupportedResponseType,
                    "only response_type=code is supported",
                );
            }
        }
        if !client.allows_grant("authorization_code") {
            return fail(
                &request,
                ErrorCode::UnauthorizedClient,
                "this client may not use the authorization code flow",
            );
        }
        let Some(scope) = get("scope") else {
            return fail(&request, ErrorCode::InvalidScope, "scope is required");
        };
        let Ok(mut scope) = ScopeSet::parse(scope) else {
            return fail(&request, ErrorCode::InvalidScope, "scope is malformed");
        };
        // SECURITY: the admin API's scope is for clients acting for themselves
        // (client_credentials); no user can delegate it, whatever a client registered.
        if scope.contains(ADMIN_SCOPE) {
            return fail(
                &request,
                ErrorCode::InvalidScope,
                "portcullis:admin cannot be granted through the authorization endpoint",
            );
        }
        // OpenID Connect Core §11 / RFC 6749 §3.3: `offline_access` is ignored (not
        // refused) when the client may not have it or cannot use refresh tokens; the
        // token response's `scope` tells the client what it got.
        // A browser app's cookie cannot be cleared by the app itself, so its refresh
        // tokens always end with the browser session.
        if scope.contains(OFFLINE_ACCESS)
            && !(client.scopes.contains(OFFLINE_ACCESS)
                && client.allows_grant("refresh_token")
                && client.refresh_token_delivery != TokenDelivery::Cookie)
        {
            scope = scope.without(OFFLINE_ACCESS);
        }
        // OpenID Connect Core §3.1.2.1: scope values that are not understood SHOULD be
        // ignored; RFC 6749 §3.3 lets the server grant less than was asked. Values this
        // client may not have are dropped (the consent page and the token response's
        // `scope` show what is granted); nothing left at all is an error.
        let ignored = scope.missing_from(&client.scopes);
        let granted = ScopeSet::from_tokens(scope.iter().filter(|s| client.scopes.contains(s)));
        if granted.is_empty() {
            return fail(
                &request,
                ErrorCode::InvalidScope,
                "none of the requested scopes is allowed for this client",
            );
        }
        if !ignored.is_empty() {
            tracing::debug!(client_id = %client.id, ignored = %ignored.join(" "), "ignored scopes the client may not have");
        }
        request.scope = granted;
        match CodeChallenge::parse(get("code_challenge"), get("code_challenge_method")) {
            Ok(challenge) => request.code_challenge = challenge.as_str().to_owned(),
            // RFC 9700 §2.1.1: only a confidential client registered without PKCE may
            // leave it out; its code then carries no challenge, and a token request with
            // a code_verifier never redeems it (§4.8.2, see the token endpoint).
            // Only for an OpenID Connect request: the nonce (the client's to send and
            // check, RFC 9700 §4.5.3.2) is what stands in for PKCE; a plain OAuth
            // request has no such protection against code injection.
            Err(PkceError::MissingChallenge)
                if !client.pkce_required()
                    && get("code_challenge_method").is_none()
                    && request.scope.contains("openid") =>
            {
                request.code_challenge = String::new();
            }
            Err(PkceError::MissingChallenge) => {
                return fail(
                    &request,
                    ErrorCode::InvalidRequest,
                    "code_challenge is required (PKCE with S256)",
                );
            }
            Err(PkceError::UnsupportedMethod) => {
                return fail(
                    &request,
                    ErrorCode::InvalidRequest,
                    "code_challenge_method must be S256 (plain is not accepted)",
                );
            }
            Err(_) => {
                return fail(
                    &request,
                    ErrorCode::InvalidRequest,
                    "code_challenge is malformed",
                );
            }
        }
        if let Some(prompt) = get("prompt") {
            for value in prompt.split(' ').filter(|v| !v.is_empty()) {
                match value {
                    "none" => request.prompt_none = true,
                    "login" | "select_account" => request.prompt_login = true,
                    "consent" => request.prompt_consent = true,
                    _ => {
                        return fail(
                            &request,
                            ErrorCode::InvalidRequest,
                            "unsupported prompt value",
                        );
                    }
                }
            }
            // OpenID Connect Core §3.1.2.1: none must stand alone.
            if request.prompt_none && (request.prompt_login || request.prompt_consent) {
                return fail(
                    &request,
                    ErrorCode::InvalidRequest,
                    "prompt=none cannot be combined with other values",
                );
            }
        }
        if let Some(max_age) = get("max_age") {
            match max_age.parse::<u32>() {
                Ok(0) => request.prompt_login = true,
                Ok(v) => request.max_age = Some(i64::from(v)),
                Err(_) => {
                    return fail(
                        &request,
                        ErrorCode::InvalidRequest,
                        "max_age must be a non-negative integer",
                    );
                }
            }
        }
        if let Some(nonce) = get("nonce") {
            if nonce.len() > MAX_NONCE_LEN || nonce.chars().any(char::is_control) {
                return fail(
                    &request,
                    ErrorCode::InvalidRequest,
                    "nonce is too long or malformed",
                );
            }
            request.nonce = Some(nonce.to_owned());
        }
        request.login_hint = get("login_hint")
            .filter(|h| h.len() <= MAX_HINT_LEN)
            .map(str::to_owned);
        if let Some(hint) = get("id_token_hint") {
            // Accepted even when expired (it names a user; it grants nothing), but the
            // signature and issuer must be ours and the audience this client.
            let verified: Result<IdTokenClaims, _> = self.keys.verify(
                hint,
                &Expectations {
                    typ: "JWT",
                    issuer: &self.issuer,
                    audience: Some(client.id.as_str()),
                    allow_expired: true,
                },
            );
            match verified {
                Ok(claims) => request.hint_sub = Some(claims.sub),
                Err(_) => {
                    return fail(
                        &request,
                        ErrorCode::InvalidRequest,
                        "id_token_hint is not a valid ID token from this provider for this client",
                    );
                }
            }
        }
        if let Some(raw) = get("claims") {
            let claims = match ClaimsRequest::parse(raw) {
                Ok(claims) => claims,
                Err(error) => {
                    return fail(&request, ErrorCode::InvalidRequest, &error.to_string());
                }
            };
            // OpenID Connect Core §5.5.1.1: an essential `acr` with values the
            // authentication cannot meet is a failed authentication. Portcullis signs in
            // with a password only and asserts no authentication context class (no `acr`
            // claim, no acr_values_supported), so no requested value can ever be met.
            // A voluntary `acr`, or an essential one without values, is ignored: Core
            // §5.5.1 lets a claim the server does not return go unanswered.
            if claims.essential_acr.is_some() {
                return fail(
                    &request,
                    ErrorCode::AccessDenied,
                    "the claims parameter asks for an essential acr this provider cannot meet \
                     (it asserts no acr values)",
                );
            }
            // Claims are an OpenID Connect request's (Core §5.5); a claim of a scope the
            // client may not have is ignored, as such a scope is (Core §3.1.2.1).
            if request.scope.contains("openid") {
                request.claims = claims.release.within(&client.scopes);
            }
            request.required_sub = claims.sub;
        }
        Ok(Ok((client, request)))
    }

    /// Decides between sign-in, consent and issuing a code.
    async fn proceed(
        &self,
        client: &Client,
        request: AuthorizationRequest,
        session: Option<&CurrentSession>,
        pending: Option<(OpaqueToken, LoginTransaction)>,
        binding: &OpaqueToken,
        actor: &Actor,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        let signed_in_here = pending.as_ref().and_then(|(_, t)| t.session_id);
        let needs_login = self.needs_login(&request, session, signed_in_here);
        if needs_login {
            if request.prompt_none {
                return self
                    .answer_error(
                        &request,
                        pending.as_ref(),
                        ErrorCode::LoginRequired,
                        "the user must sign in",
                        actor,
                    )
                    .await;
            }
            let tx = self.pending_tx(&request, pending, binding, actor).await?;
            return Ok(AuthorizeOutcome::Login { tx });
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
        let consented = self
            .store
            .find_consent(session.user.id, &client.id)
            .await?
            .unwrap_or_default();
        // OpenID Connect Core §3.1.2.1: prompt=consent asks even a first-party client's
        // user; otherwise a first-party client is granted what it asks for, including
        // offline_access (Core §11 allows other conditions permitting offline access).
        let needs_consent = request.prompt_consent
            || (!client.first_party && !request.consent_scope().is_subset(&consented));
        if needs_consent {
            if request.prompt_none {
                return self
                    .answer_error(
                        &request,
                        pending.as_ref(),
                        ErrorCode::ConsentRequired,
                        "the user must consent",
                        actor,
                    )
                    .await;
            }
            let tx = self.pending_tx(&request, pending, binding, actor).await?;
            return Ok(AuthorizeOutcome::Consent { tx });
        }
        let tx_hash = pending.as_ref().map(|(tx, _)| tx.hash());
        self.issue_code(client, &request, session, tx_hash.as_ref(), false, actor)
            .await
    }

    /// The transaction to park the request in: the current one, or a new one.
    async fn pending_tx(
        &self,
        request: &AuthorizationRequest,
        pending: Option<(OpaqueToken, LoginTransaction)>,
        binding: &OpaqueToken,
        actor: &Actor,
    ) -> Result<OpaqueToken, EndpointError> {
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

    async fn answer_error(
        &self,
        request: &AuthorizationRequest,
        pending: Option<&(OpaqueToken, LoginTransaction)>,
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

    async fn issue_code(
        &self,
        client: &Client,
        request: &AuthorizationRequest,
        session: &CurrentSession,
        tx: Option<&TokenHash>,
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
            redirect_uri: request.redirect_uri.clone(),
            scope: request.scope.clone(),
            nonce: request.nonce.clone(),
            code_challenge: request.code_challenge.clone(),
            auth_time: session.session.auth_time,
            amr: session.session.amr.clone(),
            claims: request.claims.clone(),
            created_at: now,
            expires_at: now + self.code_lifetime,
        };
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
        let consent_scope = request.consent_scope();
        if consent_given {
            audit.push(
                AuditEvent::new(now, AuditKind::ConsentGranted, Outcome::Success, actor)
                    .user(session.user.id)
                    .client(client.id.as_str())
                    .detail("scope", consent_scope.to_string()),
            );
        }
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
        let mut params = vec![("code".to_owned(), code.expose().to_owned())];
        if let Some(state) = &request.state {
            params.push(("state".into(), state.clone()));
        }
        params.push(("iss".into(), self.issuer.clone()));
        Ok(AuthorizeOutcome::Reply(ClientReply {
            redirect_uri: request.redirect_uri.clone(),
            mode: request.response_mode,
            params,
        }))
    }

    /// An error for the client, with `state` and `iss` (RFC 9207 §2).
    pub fn error_reply(&self, request: &AuthorizationRequest, error: OAuthError) -> ClientReply {
        let mut params = vec![
            ("error".to_owned(), error.code.as_str().to_owned()),
            ("error_description".to_owned(), error.description),
        ];
        if let Some(state) = &request.state {
            params.push(("state".into(), state.clone()));
        }
        params.push(("iss".into(), self.issuer.clone()));
        ClientReply {
            redirect_uri: request.redirect_uri.clone(),
            mode: request.response_mode,
            params,
        }
    }
}

fn already_answered() -> AuthorizeOutcome {
    AuthorizeOutcome::Refused(
        "This sign-in request was already answered. Please return to the application.".into(),
    )
}
