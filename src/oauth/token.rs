//! The token endpoint (RFC 6749 §3.2): client authentication and the dispatch to the
//! grant modules in `oauth::grants`.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::Provider;
use super::error::{EndpointError, ErrorCode, OAuthError};
use crate::audit::Actor;
use crate::domain::client::TokenDelivery;
use crate::domain::client::{AuthMethod, Client, ClientId, GrantType};
use crate::domain::secret::{OpaqueToken, kind};

/// A successful token response (RFC 6749 §5.1). `Debug` shows no token.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| ".."))
            .field("id_token", &self.id_token.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
}

/// What the token endpoint hands back, and how its refresh token travels.
#[derive(Debug)]
pub struct Issued {
    pub response: TokenResponse,
    pub client_id: ClientId,
    pub delivery: TokenDelivery,
    /// When the refresh token's family ends: the lifetime of a refresh cookie.
    pub refresh_expires_at: Option<OffsetDateTime>,
}

/// A token request as the HTTP layer hands it over.
pub struct TokenRequest<'a> {
    pub params: &'a HashMap<String, String>,
    pub authorization: Option<&'a str>,
    /// The refresh token from the client's HttpOnly cookie, when the request carried one
    /// (cookie delivery, see `TokenDelivery::Cookie`).
    pub refresh_cookie: Option<&'a str>,
    /// The request's `Origin` header.
    pub origin: Option<&'a str>,
    /// The browser says this is a top-level navigation (`Sec-Fetch-Mode: navigate`), e.g.
    /// a form another site made it submit.
    pub navigation: bool,
}

/// How the client presented its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    Basic,
    Post,
    None,
}

/// The client credentials of a request: the HTTP Basic header, if any, and the form.
pub struct Credentials<'a> {
    pub authorization: Option<&'a str>,
    pub params: &'a HashMap<String, String>,
}

impl Provider {
    /// `POST /token`.
    pub async fn token(
        &self,
        request: &TokenRequest<'_>,
        actor: &Actor,
    ) -> Result<Issued, EndpointError> {
        let params = request.params;
        let client = self
            .authenticate_client(&Credentials {
                authorization: request.authorization,
                params,
            })
            .await?;
        if client.refresh_token_delivery == TokenDelivery::Cookie {
            // SECURITY: the cookie is set and spent only by the app's own script: any
            // token request of such a client must come from an origin it registered (the
            // browser sets Origin; script cannot forge it) and not from a navigation, or
            // a page elsewhere could plant its own refresh cookie (login CSRF) or spend
            // the user's.
            let from_app = request
                .origin
                .is_some_and(|o| client.allowed_origins.iter().any(|a| a == o));
            if !from_app || request.navigation {
                return Err(OAuthError::invalid_request(
                    "this client's token requests must come from its registered origin",
                )
                .into());
            }
        }
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let grant = get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
        let unauthorized = || {
            OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!("this client may not use the {grant} grant"),
            )
        };
        let Some(grant_type) = GrantType::parse(grant) else {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "supported grant types: authorization_code, refresh_token, client_credentials",
            )
            .into());
        };
        match grant_type {
            GrantType::AuthorizationCode | GrantType::RefreshToken
                if !client.allows_grant(grant_type) =>
            {
                Err(unauthorized().into())
            }
            GrantType::AuthorizationCode => {
                self.authorization_code_grant(&client, params, actor).await
            }
            GrantType::RefreshToken => self.refresh_token_grant(&client, request, actor).await,
            GrantType::ClientCredentials => {
                self.client_credentials_grant(&client, params, actor).await
            }
        }
    }

    /// RFC 6749 §2.3.1 and §3.2.1: exactly one authentication method, the one the client
    /// registered; public clients authenticate with none but must name themselves.
    pub async fn authenticate_client(
        &self,
        credentials: &Credentials<'_>,
    ) -> Result<Client, EndpointError> {
        let (client_id, secret, presented) = credentials.presented()?;
        let unknown = || OAuthError::invalid_client("unknown client or wrong credentials");
        let Ok(id) = ClientId::parse(&client_id) else {
            return Err(unknown().into());
        };
        let Some(client) = self.store.find_client(&id).await? else {
            return Err(unknown().into());
        };
        let expected = match client.auth_method {
            AuthMethod::ClientSecretBasic => Presented::Basic,
            AuthMethod::ClientSecretPost => Presented::Post,
            AuthMethod::None => Presented::None,
        };
        if presented != expected {
            return Err(OAuthError::invalid_client(format!(
                "this client authenticates with {}",
                client.auth_method.as_str()
            ))
            .into());
        }
        if secret.is_some_and(|secret| !secret_matches(&client, &secret)) {
            return Err(unknown().into());
        }
        // A suspended client is refused at every endpoint that authenticates clients
        // (token: every grant, refresh included; revocation; introspection): RFC 6749
        // §5.2 "invalid_client: Client authentication failed (e.g., unknown client ...)".
        // Said only after its credentials checked out, so it reveals nothing to others.
        if client.disabled {
            return Err(OAuthError::invalid_client("this client is disabled").into());
        }
        Ok(client)
    }
}

/// A client identifier, its secret (if any), and how they were presented.
type PresentedCredentials<'a> = (Cow<'a, str>, Option<Cow<'a, str>>, Presented);

impl<'a> Credentials<'a> {
    /// RFC 6749 §2.3.1: the client identifier, the secret (if any) and how they came:
    /// HTTP Basic, or `client_id` and `client_secret` in the form, never both (§2.3: "MUST
    /// NOT use more than one authentication method in each request").
    fn presented(&self) -> Result<PresentedCredentials<'a>, EndpointError> {
        let basic = match self.authorization {
            Some(header) => Some(parse_basic(header).ok_or_else(|| {
                OAuthError::invalid_client("the Authorization header is not valid HTTP Basic")
            })?),
            None => None,
        };
        let post_secret = self.params.get("client_secret").filter(|s| !s.is_empty());
        let form_id = self.params.get("client_id").filter(|s| !s.is_empty());
        if basic.is_some() && post_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not several",
            )
            .into());
        }
        match basic {
            Some((id, secret)) => {
                if form_id.is_some_and(|f| f.as_str() != id) {
                    return Err(OAuthError::invalid_request(
                        "client_id in the body differs from the authenticated client",
                    )
                    .into());
                }
                Ok((Cow::Owned(id), Some(Cow::Owned(secret)), Presented::Basic))
            }
            None => match (form_id, post_secret) {
                (Some(id), Some(secret)) => Ok((id.into(), Some(secret.into()), Presented::Post)),
                (Some(id), None) => Ok((id.into(), None, Presented::None)),
                (None, _) => {
                    Err(OAuthError::invalid_client("client authentication is required").into())
                }
            },
        }
    }
}

/// Whether `secret` is the client's registered secret.
// SECURITY: secrets are 256-bit random values stored as SHA-256; comparing the hashes in
// constant time reveals nothing about the stored value.
fn secret_matches(client: &Client, secret: &str) -> bool {
    let presented_hash = OpaqueToken::<kind::ClientSecret>::parse(secret).map(|t| t.hash());
    match (&presented_hash, &client.secret_hash) {
        (Some(p), Some(stored)) => bool::from(p.as_bytes().ct_eq(stored.as_bytes())),
        _ => false,
    }
}

/// `Basic base64(client_id ":" client_secret)`, each part form-urlencoded
/// (RFC 6749 §2.3.1).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        crate::urlencoded::parse_pairs(format!("x={s}").as_bytes())
            .ok()
            .and_then(|mut m| m.remove("x"))
    };
    Some((decode(id)?, decode(secret)?))
}

#[cfg(test)]
mod tests {
    use super::parse_basic;

    #[test]
    fn basic_credentials_are_form_decoded() {
        // "my%20app:s%3Acret" base64-encoded.
        let header = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "my%20app:s%3Acret"
            )
        );
        assert_eq!(
            parse_basic(&header),
            Some(("my app".into(), "s:cret".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
