//! Token introspection (RFC 7662): whether a token is active, and what it says.

use std::collections::HashMap;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::Provider;
use super::claims::AccessTokenClaims;
use super::error::EndpointError;
use super::token::Credentials;
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::{Client, GrantType};
use crate::domain::secret::{OpaqueToken, kind};
use crate::oauth::error::OAuthError;

/// Why a token is described as `active: false`: recorded in the audit trail, never
/// told to the caller (RFC 7662 §2.2).
type Inactive = &'static str;

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
        let client = self.introspecting_client(params, authorization).await?;
        // RFC 7662 §2.1: `token` is REQUIRED.
        let token = params
            .get("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let now = self.clock.now();
        let described = match OpaqueToken::parse(token) {
            Some(opaque) => self.describe_refresh_token(&client, &opaque, now).await?,
            None => self.describe_access_token(&client, token).await?,
        };
        match described {
            Ok(answer) => Ok(answer),
            Err(reason) => {
                let audit =
                    AuditEvent::new(now, AuditKind::TokenIntrospected, Outcome::Failure, actor)
                        .client(client.id.as_str())
                        .detail("reason", reason);
                self.store.record_audit(&[audit]).await?;
                Ok(json!({ "active": false }))
            }
        }
    }

    /// RFC 7662 §2.1 / §4: the caller must be authorized to introspect. A public client
    /// cannot authenticate, so it could ask about any token it holds without proving who
    /// it is: introspection is for confidential clients (resource servers).
    async fn introspecting_client(
        &self,
        params: &HashMap<String, String>,
        authorization: Option<&str>,
    ) -> Result<Client, EndpointError> {
        let client = self
            .authenticate_client(&Credentials {
                authorization,
                params,
            })
            .await?;
        if client.kind.is_public() {
            return Err(
                OAuthError::invalid_client("introspection requires a confidential client").into(),
            );
        }
        Ok(client)
    }

    /// RFC 7662 §2.2 for a refresh token: active while it is the family's current token,
    /// the family, the user and (for a session-bound family) the session are live. Only
    /// the client it was issued to learns about it (§4).
    async fn describe_refresh_token(
        &self,
        client: &Client,
        token: &OpaqueToken<kind::RefreshToken>,
        now: OffsetDateTime,
    ) -> Result<Result<Value, Inactive>, EndpointError> {
        let Some(r) = self.store.find_refresh_token(&token.hash()).await? else {
            return Ok(Err("unknown token"));
        };
        if r.client_id != client.id {
            return Ok(Err("another client's refresh token"));
        }
        let active = r.rotated_at.is_none()
            && !r.family_revoked
            && r.idle_expires_at > now
            && r.absolute_expires_at > now
            && !r.user_disabled
            && (r.session_id.is_none() || r.session_live(now));
        if !active {
            return Ok(Err("refresh token rotated, revoked or expired"));
        }
        Ok(Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": r.scope.to_string(),
            "client_id": r.client_id.as_str(),
            "sub": r.user_id.to_string(),
            "iss": self.issuer,
            "iat": r.issued_at.unix_timestamp(),
            "exp": r.idle_expires_at.min(r.absolute_expires_at).unix_timestamp(),
        })))
    }

    /// RFC 7662 §2.2 for an access token: active while valid, unrevoked, and its subject
    /// (the user, or for a client's own token the client) still stands. The permission
    /// (§4, `may_introspect`) is checked before the token's liveness: a caller that may
    /// not ask learns nothing, and costs no database lookup.
    async fn describe_access_token(
        &self,
        client: &Client,
        token: &str,
    ) -> Result<Result<Value, Inactive>, EndpointError> {
        const INVALID: Inactive = "invalid, expired or revoked access token";
        let claims = match self.access_token_claims(token) {
            Ok(claims) => claims,
            Err(EndpointError::OAuth(_)) => return Ok(Err(INVALID)),
            Err(other) => return Err(other),
        };
        if !may_introspect(client, &claims.client_id) {
            return Ok(Err(
                "another client's access token, without the introspection permission",
            ));
        }
        match self.ensure_access_token_live(&claims).await {
            Ok(()) => {}
            Err(EndpointError::OAuth(_)) => return Ok(Err(INVALID)),
            Err(other) => return Err(other),
        }
        // A user's token is active only while the user is (deleted or disabled users'
        // tokens are not); a client's own token has sub = client_id.
        if claims.sub != claims.client_id && !self.user_is_active(&claims.sub).await? {
            return Ok(Err("the user is deleted or disabled"));
        }
        // A client's own token (client_credentials) lives only while the client exists,
        // may still use the grant, and its secret has not been rotated.
        if claims.sub == claims.client_id && !self.client_token_is_current(&claims).await? {
            return Ok(Err("the client changed or is gone"));
        }
        Ok(Ok(access_token_answer(claims)))
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
        claims: &AccessTokenClaims,
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

/// RFC 7662 §2.2: the members of an active access token's description.
fn access_token_answer(claims: AccessTokenClaims) -> Value {
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
    answer
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
    use super::may_introspect;
    use crate::domain::client::{Client, ClientKind, GrantType, GrantTypes};

    fn client(id: &str, introspection: bool) -> Client {
        Client {
            grant_types: GrantTypes::from([GrantType::ClientCredentials]),
            introspection,
            ..Client::fixture(id, ClientKind::Confidential)
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
