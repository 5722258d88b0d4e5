//! Validation of an authorization request, in the order OpenID Connect Core §3.1.2.2 and
//! RFC 6749 §4.1.1 / §4.1.2.1 require: first the client and its redirect URI, whose errors
//! are shown to the user and never redirected; then every other rule, whose errors go
//! back to the client. Each rule is one function in `rules.rs`.

use std::collections::HashMap;

use super::reply::AuthorizeOutcome;
use super::request::{AuthorizationRequest, Params};
use super::rules;
use crate::domain::client::{Client, ClientId};
use crate::domain::redirect_uri::RedirectUri;
use crate::oauth::Provider;
use crate::oauth::error::{EndpointError, OAuthError};

/// Why a request is refused on a page rather than answered at a redirect URI.
type Refusal = &'static str;

impl Provider {
    /// Validates the request; `Err(outcome)` is the refusal or error reply to send.
    pub(super) async fn validate(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<Result<(Client, AuthorizationRequest), AuthorizeOutcome>, EndpointError> {
        let params = Params::new(params);
        let refused = |refusal: Refusal| Ok(Err(AuthorizeOutcome::Refused(refusal.to_owned())));
        let client = match self.valid_client(params).await? {
            Ok(client) => client,
            Err(refusal) => return refused(refusal),
        };
        let redirect_uri = match registered_redirect_uri(&client, params) {
            Ok(redirect_uri) => redirect_uri,
            Err(refusal) => return refused(refusal),
        };
        // From here on, errors go back to the client.
        let mut request = AuthorizationRequest::new(&client, redirect_uri, params);
        match self.check_request(&client, params, &mut request) {
            Ok(()) => Ok(Ok((client, request))),
            Err(error) => Ok(Err(AuthorizeOutcome::Reply(
                self.error_reply(&request, error),
            ))),
        }
    }

    /// The rules checked once the redirect URI is trusted, in order; the first broken one
    /// is the error returned to the client (RFC 6749 §4.1.2.1, OpenID Connect Core
    /// §3.1.2.6).
    fn check_request(
        &self,
        client: &Client,
        params: Params<'_>,
        request: &mut AuthorizationRequest,
    ) -> Result<(), OAuthError> {
        rules::state(params)?;
        rules::response_mode(params)?;
        rules::no_request_object(params)?;
        rules::response_type(params)?;
        rules::code_flow_allowed(client)?;
        let requested = rules::requested_scope(params)?;
        request.scope = rules::granted_scope(client, requested)?;
        request.code_challenge = rules::code_challenge(client, params, &request.scope)?;
        rules::prompt(params, request)?;
        rules::max_age(params, request)?;
        request.nonce = rules::nonce(params)?;
        request.login_hint = rules::login_hint(params);
        request.hint_sub = self.id_token_hint(client, params)?;
        rules::claims(client, params, request)?;
        rules::acr_values(params, request);
        Ok(())
    }

    /// RFC 6749 §4.1.2.1: with a missing or invalid client identifier the server informs
    /// the user and MUST NOT redirect. A suspended client's identifier is not valid for
    /// now, and its redirect URI is not one to send users to (it may be compromised), so
    /// it is refused like an unknown client rather than sent an `unauthorized_client`
    /// redirect.
    async fn valid_client(
        &self,
        params: Params<'_>,
    ) -> Result<Result<Client, Refusal>, EndpointError> {
        let Some(client_id) = params.get("client_id") else {
            return Ok(Err(
                "The request does not say which application it comes from (client_id is missing).",
            ));
        };
        let Some(client) = self.find_client(client_id).await? else {
            return Ok(Err(
                "The application that sent you here is not registered with this provider.",
            ));
        };
        if client.disabled {
            return Ok(Err(
                "The application that sent you here is disabled on this provider, so you \
                 cannot sign in to it for now.",
            ));
        }
        Ok(Ok(client))
    }

    /// The client registered as `raw`, if `raw` is a well-formed client identifier.
    pub(super) async fn find_client(&self, raw: &str) -> Result<Option<Client>, EndpointError> {
        let Ok(id) = ClientId::parse(raw) else {
            return Ok(None);
        };
        Ok(self.store.find_client(&id).await?)
    }
}

/// RFC 6749 §3.1.2.3 and §4.1.2.1, OpenID Connect Core §3.1.2.1: `redirect_uri` is required
/// and must match one registered for the client exactly (RFC 8252 §7.3: a native app's
/// loopback URI on any port); otherwise the user is told and is not redirected.
fn registered_redirect_uri(client: &Client, params: Params<'_>) -> Result<RedirectUri, Refusal> {
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return Err("The request has no redirect_uri.");
    };
    let unregistered = "The redirect_uri of this request is not registered for the \
                        application, so you are not sent back to it.";
    if !client.redirect_uri_matches(redirect_uri) {
        return Err(unregistered);
    }
    // A registered URI (or its loopback port variant) always parses.
    RedirectUri::parse(redirect_uri).map_err(|_| unregistered)
}
