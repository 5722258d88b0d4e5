//! The rules an authorization request must meet once its client and redirect URI are
//! trusted, one function each. A broken rule is an `OAuthError` for the client.

use super::request::{AuthorizationRequest, MAX_STATE_LEN, Params, ResponseMode, is_vschar};
use crate::domain::claims::ClaimsRequest;
use crate::domain::client::{Client, GrantType, TokenDelivery};
use crate::domain::mfa::AuthLevel;
use crate::domain::pkce::{CodeChallenge, PkceError};
use crate::domain::refresh::OFFLINE_ACCESS;
use crate::domain::scope::{ADMIN_SCOPE, ScopeSet};
use crate::keys::Expectations;
use crate::oauth::Provider;
use crate::oauth::claims::IdTokenClaims;
use crate::oauth::error::{ErrorCode, OAuthError};

/// Longest `nonce` and `login_hint` accepted.
const MAX_NONCE_LEN: usize = 512;
const MAX_HINT_LEN: usize = 256;

fn invalid_request(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, description)
}

/// RFC 6749 §4.1.1 and Appendix A.5: `state` is VSCHAR (%x20-7E), and we bound its length.
pub(super) fn state(params: Params<'_>) -> Result<(), OAuthError> {
    let Some(state) = params.get("state") else {
        return Ok(());
    };
    if state.len() > MAX_STATE_LEN {
        return Err(invalid_request("state is too long"));
    }
    if !is_vschar(state) {
        return Err(invalid_request("state must be printable ASCII"));
    }
    Ok(())
}

/// OAuth 2.0 Multiple Response Type Encoding Practices §2.1 and OAuth 2.0 Form Post
/// Response Mode: `query` (the default for `code`) or `form_post`.
pub(super) fn response_mode(params: Params<'_>) -> Result<(), OAuthError> {
    match ResponseMode::parse(params.get("response_mode")) {
        Some(_) => Ok(()),
        None => Err(invalid_request("response_mode must be query or form_post")),
    }
}

/// OpenID Connect Core §6.1 and §6.2: `request` and `request_uri` are optional features
/// this provider does not offer, refused with their own error codes (Core §3.1.2.6).
pub(super) fn no_request_object(params: Params<'_>) -> Result<(), OAuthError> {
    if params.contains("request") {
        return Err(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    if params.contains("request_uri") {
        return Err(OAuthError::new(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        ));
    }
    Ok(())
}

/// RFC 6749 §4.1.1 and §3.1.1: `response_type` is required, and only `code` is offered
/// (OpenID Connect Core §3.1.2.1, the Authorization Code Flow).
pub(super) fn response_type(params: Params<'_>) -> Result<(), OAuthError> {
    match params.get("response_type") {
        None => Err(invalid_request("response_type is required")),
        Some("code") => Ok(()),
        Some(_) => Err(OAuthError::new(
            ErrorCode::UnsupportedResponseType,
            "only response_type=code is supported",
        )),
    }
}

/// RFC 6749 §4.1.2.1 `unauthorized_client`: the client must be registered for the
/// authorization code grant.
pub(super) fn code_flow_allowed(client: &Client) -> Result<(), OAuthError> {
    if client.allows_grant(GrantType::AuthorizationCode) {
        return Ok(());
    }
    Err(OAuthError::new(
        ErrorCode::UnauthorizedClient,
        "this client may not use the authorization code flow",
    ))
}

/// RFC 6749 §3.3, OpenID Connect Core §3.1.2.1: `scope` is required and well-formed.
pub(super) fn requested_scope(params: Params<'_>) -> Result<ScopeSet, OAuthError> {
    let invalid_scope = |description| OAuthError::new(ErrorCode::InvalidScope, description);
    let Some(scope) = params.get("scope") else {
        return Err(invalid_scope("scope is required"));
    };
    let Ok(scope) = ScopeSet::parse(scope) else {
        return Err(invalid_scope("scope is malformed"));
    };
    // SECURITY: the admin API's scope is for clients acting for themselves
    // (client_credentials); no user can delegate it, whatever a client registered.
    if scope.contains(ADMIN_SCOPE) {
        return Err(invalid_scope(
            "portcullis:admin cannot be granted through the authorization endpoint",
        ));
    }
    Ok(scope)
}

/// RFC 6749 §3.3 and OpenID Connect Core §3.1.2.1: the server may grant less than was
/// asked, and scope values it does not understand SHOULD be ignored. What the client may
/// not have is dropped (the consent page and the token response's `scope` show what is
/// granted); nothing left at all is `invalid_scope`.
pub(super) fn granted_scope(client: &Client, requested: ScopeSet) -> Result<ScopeSet, OAuthError> {
    let mut scope = requested;
    // OpenID Connect Core §11 / RFC 6749 §3.3: `offline_access` is ignored (not
    // refused) when the client may not have it or cannot use refresh tokens; the
    // token response's `scope` tells the client what it got.
    // A browser app's cookie cannot be cleared by the app itself, so its refresh
    // tokens always end with the browser session.
    if scope.contains(OFFLINE_ACCESS)
        && !(client.scopes.contains(OFFLINE_ACCESS)
            && client.allows_grant(GrantType::RefreshToken)
            && client.refresh_token_delivery != TokenDelivery::Cookie)
    {
        scope = scope.without(OFFLINE_ACCESS);
    }
    let ignored = scope.missing_from(&client.scopes);
    let granted = ScopeSet::from_tokens(scope.iter().filter(|s| client.scopes.contains(s)));
    if granted.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "none of the requested scopes is allowed for this client",
        ));
    }
    if !ignored.is_empty() {
        tracing::debug!(client_id = %client.id, ignored = %ignored.join(" "), "ignored scopes the client may not have");
    }
    Ok(granted)
}

/// RFC 7636 §4.3 and §4.4.1, RFC 9700 §2.1.1: a `code_challenge` with method `S256`. The
/// challenge is returned as stored with the code; empty when the client may go without.
pub(super) fn code_challenge(
    client: &Client,
    params: Params<'_>,
    scope: &ScopeSet,
) -> Result<String, OAuthError> {
    let method = params.get("code_challenge_method");
    match CodeChallenge::parse(params.get("code_challenge"), method) {
        Ok(challenge) => Ok(challenge.as_str().to_owned()),
        // RFC 9700 §2.1.1: only a confidential client registered without PKCE may
        // leave it out; its code then carries no challenge, and a token request with
        // a code_verifier never redeems it (§4.8.2, see the token endpoint).
        // Only for an OpenID Connect request: the nonce (the client's to send and
        // check, RFC 9700 §4.5.3.2) is what stands in for PKCE; a plain OAuth
        // request has no such protection against code injection.
        Err(PkceError::MissingChallenge)
            if !client.pkce_required() && method.is_none() && scope.contains("openid") =>
        {
            Ok(String::new())
        }
        Err(PkceError::MissingChallenge) => Err(invalid_request(
            "code_challenge is required (PKCE with S256)",
        )),
        Err(PkceError::UnsupportedMethod) => Err(invalid_request(
            "code_challenge_method must be S256 (plain is not accepted)",
        )),
        Err(_) => Err(invalid_request("code_challenge is malformed")),
    }
}

/// OpenID Connect Core §3.1.2.1 `prompt`: a space-separated list of `none`, `login`,
/// `consent` and `select_account` (which, with one account per session, means `login`);
/// `none` must stand alone.
pub(super) fn prompt(
    params: Params<'_>,
    request: &mut AuthorizationRequest,
) -> Result<(), OAuthError> {
    let Some(prompt) = params.get("prompt") else {
        return Ok(());
    };
    for value in prompt.split(' ').filter(|v| !v.is_empty()) {
        match value {
            "none" => request.prompt_none = true,
            "login" | "select_account" => request.prompt_login = true,
            "consent" => request.prompt_consent = true,
            _ => return Err(invalid_request("unsupported prompt value")),
        }
    }
    if request.prompt_none && (request.prompt_login || request.prompt_consent) {
        return Err(invalid_request(
            "prompt=none cannot be combined with other values",
        ));
    }
    Ok(())
}

/// OpenID Connect Core §3.1.2.1 `max_age`: a non-negative number of seconds; `0` means
/// the user must sign in again, like `prompt=login`.
pub(super) fn max_age(
    params: Params<'_>,
    request: &mut AuthorizationRequest,
) -> Result<(), OAuthError> {
    let Some(max_age) = params.get("max_age") else {
        return Ok(());
    };
    match max_age.parse::<u32>() {
        Ok(0) => request.prompt_login = true,
        Ok(v) => request.max_age = Some(i64::from(v)),
        Err(_) => return Err(invalid_request("max_age must be a non-negative integer")),
    }
    Ok(())
}

/// OpenID Connect Core §3.1.2.1 `nonce`, echoed in the ID token (§3.1.3.7); bounded in
/// length and free of control characters.
pub(super) fn nonce(params: Params<'_>) -> Result<Option<String>, OAuthError> {
    let Some(nonce) = params.get("nonce") else {
        return Ok(None);
    };
    if nonce.len() > MAX_NONCE_LEN || nonce.chars().any(char::is_control) {
        return Err(invalid_request("nonce is too long or malformed"));
    }
    Ok(Some(nonce.to_owned()))
}

/// OpenID Connect Core §3.1.2.1 `login_hint`: only a hint, so one too long to be useful
/// is dropped rather than refused.
pub(super) fn login_hint(params: Params<'_>) -> Option<String> {
    params
        .get("login_hint")
        .filter(|h| h.len() <= MAX_HINT_LEN)
        .map(str::to_owned)
}

impl Provider {
    /// OpenID Connect Core §3.1.2.1 `id_token_hint`: the `sub` of an ID token we issued
    /// to this client. Accepted even when expired (it names a user; it grants nothing),
    /// but the signature and issuer must be ours and the audience this client.
    pub(super) fn id_token_hint(
        &self,
        client: &Client,
        params: Params<'_>,
    ) -> Result<Option<String>, OAuthError> {
        let Some(hint) = params.get("id_token_hint") else {
            return Ok(None);
        };
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
            Ok(claims) => Ok(Some(claims.sub)),
            Err(_) => Err(invalid_request(
                "id_token_hint is not a valid ID token from this provider for this client",
            )),
        }
    }
}

/// OpenID Connect Core §5.5 `claims`: the claims to release beyond the scope, and the
/// subjects a `sub` with values allows (§5.5.1).
pub(super) fn claims(
    client: &Client,
    params: Params<'_>,
    request: &mut AuthorizationRequest,
) -> Result<(), OAuthError> {
    let Some(raw) = params.get("claims") else {
        return Ok(());
    };
    let claims = ClaimsRequest::parse(raw).map_err(|error| invalid_request(&error.to_string()))?;
    // OpenID Connect Core §5.5.1.1: an essential `acr` with values makes one of them a
    // condition of the authentication; one this provider never asserts cannot be met,
    // which is a failed authentication. Of several values, the lowest level listed
    // satisfies the request. A voluntary `acr` (or an essential one without values)
    // only asks for the claim, which every ID token carries.
    if let Some(values) = &claims.essential_acr {
        let level = values
            .iter()
            .filter_map(|v| v.as_str().and_then(AuthLevel::parse))
            .min()
            .ok_or_else(|| {
                OAuthError::new(
                    ErrorCode::AccessDenied,
                    "the claims parameter asks for an essential acr this provider cannot meet \
                     (see acr_values_supported)",
                )
            })?;
        request.min_level = request.min_level.max(Some(level));
    }
    // Claims are an OpenID Connect request's (Core §5.5); a claim of a scope the
    // client may not have is ignored, as such a scope is (Core §3.1.2.1).
    if request.scope.contains("openid") {
        request.claims = claims.release.within(&client.scopes);
    }
    request.required_sub = claims.sub;
    Ok(())
}

/// The authentication level the request asks for (OpenID Connect Core §3.1.2.1
/// `acr_values`: voluntary, so values this provider does not assert are ignored, and the
/// lowest level listed is enough). The client's and the deployment's policy are added
/// when the request is decided (`Provider::needed_level`), so a policy switched on while
/// a request waits applies to it.
pub(super) fn acr_values(params: Params<'_>, request: &mut AuthorizationRequest) {
    let asked = params.get("acr_values").and_then(AuthLevel::requested);
    request.min_level = request.min_level.max(asked);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::domain::client::ClientKind;
    use crate::domain::redirect_uri::RedirectUri;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client(scopes: &str, require_pkce: bool) -> Client {
        Client {
            name: "Web app".into(),
            redirect_uris: vec![
                RedirectUri::parse("https://app.example/cb").unwrap_or_else(|e| panic!("{e}")),
            ],
            scopes: ScopeSet::parse(scopes).unwrap_or_else(|e| panic!("{e}")),
            require_pkce,
            ..Client::fixture("web-app", ClientKind::Confidential)
        }
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn request(raw: &HashMap<String, String>) -> AuthorizationRequest {
        AuthorizationRequest::new(
            &client("openid", true),
            RedirectUri::parse("https://app.example/cb").unwrap_or_else(|e| panic!("{e}")),
            Params::new(raw),
        )
    }

    fn code(result: Result<impl std::fmt::Debug, OAuthError>) -> &'static str {
        match result {
            Ok(value) => panic!("expected an error, got {value:?}"),
            Err(error) => error.code.as_str(),
        }
    }

    #[test]
    fn a_state_that_breaks_the_rules_is_refused_and_not_echoed() {
        for value in ["caf\u{e9}", &"s".repeat(MAX_STATE_LEN + 1)] {
            let raw = params(&[("state", value)]);
            assert_eq!(code(state(Params::new(&raw))), "invalid_request");
            assert_eq!(request(&raw).state, None);
        }
        let raw = params(&[("state", "xyz"), ("response_mode", "fragment")]);
        assert_eq!(request(&raw).state.as_deref(), Some("xyz"));
        assert_eq!(request(&raw).response_mode, ResponseMode::Query);
    }

    #[test]
    fn prompt_none_stands_alone_and_max_age_zero_forces_sign_in() {
        let raw = params(&[("prompt", "none login")]);
        let mut req = request(&raw);
        assert_eq!(code(prompt(Params::new(&raw), &mut req)), "invalid_request");

        let raw = params(&[("prompt", "select_account consent"), ("max_age", "0")]);
        let mut req = request(&raw);
        assert!(prompt(Params::new(&raw), &mut req).is_ok());
        assert!(max_age(Params::new(&raw), &mut req).is_ok());
        assert!(req.prompt_login && req.prompt_consent && !req.prompt_none);
        assert_eq!(req.max_age, None);

        let raw = params(&[("max_age", "-1")]);
        let mut req = request(&raw);
        assert_eq!(
            code(max_age(Params::new(&raw), &mut req)),
            "invalid_request"
        );
    }

    #[test]
    fn scopes_the_client_may_not_have_are_dropped_and_none_left_is_invalid_scope() {
        let web = client("openid profile offline_access", true);
        let requested =
            ScopeSet::parse("openid email offline_access").unwrap_or_else(|e| panic!("{e}"));
        let granted = granted_scope(&web, requested).unwrap_or_else(|e| panic!("{e:?}"));
        // No refresh_token grant: offline_access is ignored, not refused.
        assert_eq!(granted.to_string(), "openid");

        let requested = ScopeSet::parse("email").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code(granted_scope(&web, requested)), "invalid_scope");

        let raw = params(&[("scope", "openid portcullis:admin")]);
        assert_eq!(code(requested_scope(Params::new(&raw))), "invalid_scope");
    }

    #[test]
    fn only_an_openid_request_of_a_confidential_client_without_pkce_may_omit_the_challenge() {
        let openid = ScopeSet::parse("openid").unwrap_or_else(|e| panic!("{e}"));
        let oauth = ScopeSet::parse("profile").unwrap_or_else(|e| panic!("{e}"));
        let none = params(&[]);
        let relaxed = client("openid profile", false);
        assert_eq!(
            code_challenge(&relaxed, Params::new(&none), &openid).ok(),
            Some(String::new())
        );
        assert_eq!(
            code(code_challenge(&relaxed, Params::new(&none), &oauth)),
            "invalid_request"
        );
        let strict = client("openid profile", true);
        assert_eq!(
            code(code_challenge(&strict, Params::new(&none), &openid)),
            "invalid_request"
        );
        let plain = params(&[
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "plain"),
        ]);
        assert_eq!(
            code(code_challenge(&strict, Params::new(&plain), &openid)),
            "invalid_request"
        );
        let s256 = params(&[
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]);
        assert_eq!(
            code_challenge(&strict, Params::new(&s256), &openid).ok(),
            Some(CHALLENGE.to_owned())
        );
    }
}
