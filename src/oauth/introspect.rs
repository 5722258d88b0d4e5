//! Token introspection (RFC 7662): whether a token is active, and what it says.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::Provider;
use super::error::EndpointError;
use super::token::Credentials;
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::{Client, GrantType};
use crate::domain::secret::OpaqueToken;
use crate::oauth::error::OAuthError;

impl Provider {
    /// `POST /introspect`. Only authenticated confidential clients may ask (§2.1). Access
    /// tokens are described to the client they were issued to, and to clients with the
    /// `introspection` permission (resource servers; see `may_introspect`); refresh tokens
    /// only to the client they were issued to. Otherwise the answer is `active: false`
    /// (§2.2, to prevent token scanning).
    pub async fn introspect(
        &self,
        params: &HashMap<String, String>,
        authorization: Option<&str>,
        actor: &Actor,
    ) -> Result<Value, EndpointError> {
        let client = self
            .authenticate_client(&Credentials {
                authorization,
                params,
            })
            .await?;
        // RFC 7662 §2.1 / §4: the caller must be authorized to introspect. A public client
        // cannot authenticate, so it could ask about any token it holds without proving
        // who it is: introspection is for confidential clients (resource servers).
        if client.kind.is_public() {
            return Err(
                OAuthError::invalid_client("introspection requires a confidential client").into(),
            );
        }
        let token = params
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let now = self.clock.now();
        let inactive = |reason: &str| {
            AuditEvent::new(now, AuditKind::TokenIntrospected, Outcome::Failure, actor)
                .client(client.id.as_str())
                .detail("reason", reason)
        };
        let (answer, denial) = if let Some(opaque) = OpaqueToken::parse(token) {
            match self.store.find_refresh_token(&opaque.hash()).await? {
                Some(r) if r.client_id != client.id => {
                    (None, inactive("another client's refresh token"))
                }
                Some(r)
                    if r.rotated_at.is_none()
                        && !r.family_revoked
                        && r.idle_expires_at > now
                        && r.absolute_expires_at > now
                        && !r.user_disabled
                        && (r.session_id.is_none() || r.session_live(now)) =>
                {
                    let answer = json!({
                        "active": true,
                        "token_type": "refresh_token",
                        "scope": r.scope.to_string(),
                        "client_id": r.client_id.as_str(),
                        "sub": r.user_id.to_string(),
                        "iss": self.issuer,
                        "iat": r.issued_at.unix_timestamp(),
                        "exp": r.idle_expires_at.min(r.absolute_expires_at).unix_timestamp(),
                    });
                    (Some(answer), inactive(""))
                }
                Some(_) => (None, inactive("refresh token rotated, revoked or expired")),
                None => (None, inactive("unknown token")),
            }
        } else {
            // The permission is checked before the token's liveness: a caller that may not
            // ask learns nothing, and costs no database lookup.
            let checked = match self.access_token_claims(token) {
                Ok(claims) if !may_introspect(&client, &claims.client_id) => Ok(None),
                Ok(claims) => self
                    .ensure_access_token_live(&claims)
                    .await
                    .map(|()| Some(claims)),
                Err(e) => Err(e),
            };
            match checked {
                Ok(None) => (
                    None,
                    inactive("another client's access token, without the introspection permission"),
                ),
                // A user's token is active only while the user is (deleted or disabled
                // users' tokens are not); a client's own token has sub = client_id.
                Ok(Some(claims))
                    if claims.sub != claims.client_id
                        && !self.user_is_active(&claims.sub).await? =>
                {
                    (None, inactive("the user is deleted or disabled"))
                }
                // A client's own token (client_credentials) lives only while the client
                // exists, may still use the grant, and its secret has not been rotated.
                Ok(Some(claims))
                    if claims.sub == claims.client_id
                        && !self.client_token_is_current(&claims).await? =>
                {
                    (None, inactive("the client changed or is gone"))
                }
                Ok(Some(claims)) => {
                    let mut answer = json!({
                        "active": true,
                        "token_type": "Bearer",
                        "scope": claims.scope,
                        "client_id": claims.client_id,
                        "sub": claims.sub,
                        "iss": claims.iss,
                        "aud": claims.aud,
                        "iat": claims.iat,
                        "exp": claims.exp,
                        "jti": claims.jti,
                    });
                    if let Value::Object(map) = &mut answer {
                        if let Some(sid) = claims.sid {
                            map.insert("sid".into(), sid.into());
                        }
                        if let Some(auth_time) = claims.auth_time {
                            map.insert("auth_time".into(), auth_time.into());
                        }
                    }
                    (Some(answer), inactive(""))
                }
                Err(EndpointError::OAuth(_)) => {
                    (None, inactive("invalid, expired or revoked access token"))
                }
                Err(other) => return Err(other),
            }
        };
        match answer {
            Some(answer) => Ok(answer),
            None => {
                self.store.record_audit(&[denial]).await?;
                Ok(json!({ "active": false }))
            }
        }
    }

    async fn user_is_active(&self, sub: &str) -> Result<bool, EndpointError> {
        let Ok(id) = uuid::Uuid::parse_str(sub) else {
            return Ok(false);
        };
        Ok(self
            .store
            .find_user_by_id(crate::domain::user::UserId(id))
            .await?
            .is_some_and(|u| !u.disabled))
    }

    async fn client_token_is_current(
        &self,
        claims: &super::claims::AccessTokenClaims,
    ) -> Result<bool, EndpointError> {
        let Ok(id) = crate::domain::client::ClientId::parse(&claims.client_id) else {
            return Ok(false);
        };
        Ok(self.store.find_client(&id).await?.is_some_and(|c| {
            c.allows_grant(GrantType::ClientCredentials)
                && super::claims::token_matches_secret(claims, &c)
        }))
    }
}

/// Whether `caller` may learn about an access token issued to `token_client_id`: its own
/// tokens always; other clients' tokens only with the `introspection` permission (RFC 7662
/// §4: "the authorization server MUST determine whether or not the protected resource is
/// allowed to introspect" a token). Without it the answer is `active: false` (§2.2),
/// which reveals nothing about the token.
pub fn may_introspect(caller: &Client, token_client_id: &str) -> bool {
    caller.id.as_str() == token_client_id || caller.introspection
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::may_introspect;
    use crate::domain::client::TokenDelivery;
    use crate::domain::client::{AuthMethod, Client, ClientId, ClientKind, GrantType, GrantTypes};
    use crate::domain::jws::SigningAlg;
    use crate::domain::scope::ScopeSet;

    fn client(id: &str, introspection: bool) -> Client {
        Client {
            id: ClientId::parse(id).unwrap_or_else(|e| panic!("{e}")),
            name: "Resource server".into(),
            kind: ClientKind::Confidential,
            auth_method: AuthMethod::ClientSecretBasic,
            secret_hash: None,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            allowed_origins: vec![],
            grant_types: GrantTypes::from([GrantType::ClientCredentials]),
            scopes: ScopeSet::default(),
            first_party: false,
            refresh_token_delivery: TokenDelivery::Body,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            id_token_signed_response_alg: SigningAlg::RS256,
            require_pkce: true,
            disabled: false,
            introspection,
        }
    }

    #[test]
    fn own_tokens_always_others_only_with_the_permission() {
        assert!(may_introspect(&client("rs", false), "rs"));
        assert!(!may_introspect(&client("rs", false), "web-app"));
        assert!(may_introspect(&client("rs", true), "web-app"));
        assert!(may_introspect(&client("rs", true), "rs"));
    }
}
