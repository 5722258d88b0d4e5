//! The token endpoint (RFC 6749 §3.2, §4.1.3): client authentication and the
//! `authorization_code` grant with PKCE (RFC 7636 §4.6).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::Provider;
use super::claims::{AccessTokenClaims, IdTokenClaims, UserClaims, at_hash};
use super::error::{EndpointError, ErrorCode, OAuthError};
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::{AuthMethod, Client, ClientId};
use crate::domain::pkce::challenge_for_verifier;
use crate::domain::secret::OpaqueToken;
use crate::storage::{CodeRedemption, Redemption};

/// A successful token response (RFC 6749 §5.1). `Debug` shows no token.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
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
        params: &HashMap<String, String>,
        authorization: Option<&str>,
        actor: &Actor,
    ) -> Result<TokenResponse, EndpointError> {
        let client = self
            .authenticate_client(&Credentials {
                authorization,
                params,
            })
            .await?;
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        match get("grant_type") {
            None => Err(OAuthError::invalid_request("grant_type is required").into()),
            Some("authorization_code") => {
                if !client.allows_grant("authorization_code") {
                    return Err(OAuthError::new(
                        ErrorCode::UnauthorizedClient,
                        "this client may not use the authorization_code grant",
                    )
                    .into());
                }
                self.authorization_code_grant(&client, params, actor).await
            }
            Some(_) => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "supported grant types: authorization_code",
            )
            .into()),
        }
    }

    /// RFC 6749 §2.3.1 and §3.2.1: exactly one authentication method, the one the client
    /// registered; public clients authenticate with none but must name themselves.
    pub async fn authenticate_client(
        &self,
        credentials: &Credentials<'_>,
    ) -> Result<Client, EndpointError> {
        let params = credentials.params;
        let basic = match credentials.authorization {
            Some(header) => Some(parse_basic(header).ok_or_else(|| {
                OAuthError::invalid_client("the Authorization header is not valid HTTP Basic")
            })?),
            None => None,
        };
        let post_secret = params.get("client_secret").filter(|s| !s.is_empty());
        let form_id = params.get("client_id").filter(|s| !s.is_empty());
        if basic.is_some() && post_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not several",
            )
            .into());
        }
        let (client_id, secret, presented) = match &basic {
            Some((id, secret)) => {
                if form_id.is_some_and(|f| f != id) {
                    return Err(OAuthError::invalid_request(
                        "client_id in the body differs from the authenticated client",
                    )
                    .into());
                }
                (id.as_str(), Some(secret.as_str()), Presented::Basic)
            }
            None => match (form_id, post_secret) {
                (Some(id), Some(secret)) => (id.as_str(), Some(secret.as_str()), Presented::Post),
                (Some(id), None) => (id.as_str(), None, Presented::None),
                (None, _) => {
                    return Err(
                        OAuthError::invalid_client("client authentication is required").into(),
                    );
                }
            },
        };
        let unknown = || OAuthError::invalid_client("unknown client or wrong credentials");
        let Ok(id) = ClientId::parse(client_id) else {
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
        if let Some(secret) = secret {
            // SECURITY: secrets are 256-bit random values stored as SHA-256; comparing the
            // hashes in constant time reveals nothing about the stored value.
            let presented_hash = OpaqueToken::parse(secret).map(|t| t.hash());
            let ok = match (&presented_hash, &client.secret_hash) {
                (Some(p), Some(stored)) => bool::from(p.as_bytes().ct_eq(stored.as_bytes())),
                _ => false,
            };
            if !ok {
                return Err(unknown().into());
            }
        }
        Ok(client)
    }

    async fn authorization_code_grant(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        actor: &Actor,
    ) -> Result<TokenResponse, EndpointError> {
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let code = get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        let redirect_uri = get("redirect_uri")
            .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
        let verifier = get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
        let invalid = || {
            OAuthError::invalid_grant(
                "the code is invalid or expired, or was issued for another client, \
                 redirect_uri or code_verifier",
            )
        };
        let challenge = challenge_for_verifier(verifier).map_err(|_| invalid())?;
        let code = OpaqueToken::parse(code).ok_or_else(invalid)?;

        let now = self.clock.now();
        let jti = Uuid::new_v4();
        let expires_at = now + self.access_token_lifetime;
        let issued = AuditEvent::new(now, AuditKind::TokenIssued, Outcome::Success, actor)
            .client(client.id.as_str())
            .detail("grant_type", "authorization_code")
            .detail("jti", jti.to_string());
        let reused = AuditEvent::new(now, AuditKind::CodeReused, Outcome::Failure, actor)
            .client(client.id.as_str())
            .detail("action", "revoked the tokens issued for the code");
        let redemption = self
            .store
            .redeem_code(
                &CodeRedemption {
                    code_hash: code.hash(),
                    client_id: &client.id,
                    redirect_uri,
                    code_challenge: challenge.as_str(),
                    access_token_jti: jti,
                    access_token_expires_at: expires_at,
                    audit_issued: &issued,
                    audit_reused: &reused,
                },
                now,
            )
            .await?;
        let record = match redemption {
            Redemption::Redeemed(record) => record,
            Redemption::Reused => {
                return Err(OAuthError::invalid_grant(
                    "the code was already used; the tokens issued for it are revoked",
                )
                .into());
            }
            Redemption::Invalid => return Err(invalid().into()),
        };
        let user = self
            .store
            .find_user_by_id(record.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(|| OAuthError::invalid_grant("the user is no longer active"))?;

        let access_token = self.keys.sign(
            "at+jwt",
            &AccessTokenClaims {
                iss: self.issuer.clone(),
                sub: user.id.to_string(),
                aud: self.issuer.clone(),
                client_id: client.id.to_string(),
                scope: record.scope.to_string(),
                iat: now.unix_timestamp(),
                exp: expires_at.unix_timestamp(),
                jti: jti.to_string(),
                sid: Some(record.session_id.to_string()),
                auth_time: Some(record.auth_time.unix_timestamp()),
            },
        )?;
        let id_token = if record.scope.contains("openid") {
            Some(self.keys.sign(
                "JWT",
                &IdTokenClaims {
                    iss: self.issuer.clone(),
                    sub: user.id.to_string(),
                    aud: client.id.to_string(),
                    azp: client.id.to_string(),
                    iat: now.unix_timestamp(),
                    exp: (now + self.id_token_lifetime).unix_timestamp(),
                    auth_time: record.auth_time.unix_timestamp(),
                    nonce: record.nonce.clone(),
                    at_hash: Some(at_hash(&access_token)),
                    sid: Some(record.session_id.to_string()),
                    amr: record.amr.clone(),
                    user: UserClaims::for_scope(&user, &record.scope),
                },
            )?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.access_token_lifetime.whole_seconds(),
            scope: record.scope.to_string(),
            id_token,
        })
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
        crate::http::form::parse_pairs(format!("x={s}").as_bytes())
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
