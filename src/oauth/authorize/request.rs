//! The authorization request: its raw parameters, read one way everywhere, and the
//! validated request kept while the user signs in or consents.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::claims::RequestedClaims;
use crate::domain::client::Client;
use crate::domain::redirect_uri::RedirectUri;
use crate::domain::scope::ScopeSet;

/// Longest `state` accepted.
pub(super) const MAX_STATE_LEN: usize = 2048;

/// The parameters of an authorization request as the handler parsed them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Params<'a>(&'a HashMap<String, String>);

impl<'a> Params<'a> {
    pub(super) fn new(params: &'a HashMap<String, String>) -> Self {
        Self(params)
    }

    /// The value of `name`. RFC 6749 §3.1: parameters sent without a value are treated
    /// as omitted.
    pub(super) fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Whether `name` was sent at all, even empty.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Query,
    /// OAuth 2.0 Form Post Response Mode.
    FormPost,
}

impl ResponseMode {
    /// OAuth 2.0 Multiple Response Type Encoding Practices §2.1: `None` for a mode this
    /// provider does not offer.
    pub(super) fn parse(raw: Option<&str>) -> Option<Self> {
        match raw {
            None | Some("query") => Some(Self::Query),
            Some("form_post") => Some(Self::FormPost),
            Some(_) => None,
        }
    }
}

/// A validated authorization request, kept in the login transaction while the user signs
/// in or consents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: RedirectUri,
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
    /// The authentication level the session must reach: from `acr_values` (Core
    /// §3.1.2.1), an essential `acr` claim (§5.5.1.1), the client's `require_mfa`, or
    /// `login.require_mfa`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_level: Option<crate::domain::mfa::AuthLevel>,
}

impl AuthorizationRequest {
    /// A request for `client` at its verified `redirect_uri`, with what an error reply
    /// needs (RFC 6749 §4.1.2.1): `state` when it is one we may echo, and the response
    /// mode, or `query` when the one asked for is not offered. The rules fill in the rest.
    pub(super) fn new(client: &Client, redirect_uri: RedirectUri, params: Params<'_>) -> Self {
        let state = params
            .get("state")
            .filter(|s| s.len() <= MAX_STATE_LEN && is_vschar(s))
            .map(str::to_owned);
        Self {
            client_id: client.id.to_string(),
            redirect_uri,
            scope: ScopeSet::default(),
            state,
            nonce: None,
            code_challenge: String::new(),
            response_mode: ResponseMode::parse(params.get("response_mode"))
                .unwrap_or(ResponseMode::Query),
            prompt_none: false,
            prompt_login: false,
            prompt_consent: false,
            max_age: None,
            login_hint: None,
            hint_sub: None,
            claims: RequestedClaims::default(),
            required_sub: None,
            min_level: None,
        }
    }

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

/// RFC 6749 Appendix A.5: `state` is VSCHAR (%x20-7E).
pub(super) fn is_vschar(value: &str) -> bool {
    value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}
