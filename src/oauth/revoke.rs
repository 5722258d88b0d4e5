//! Token revocation (RFC 7009): a refresh token revokes its whole family, an access token
//! is denylisted by `jti` until it expires, and anything else is answered like success.

use std::collections::HashMap;

use uuid::Uuid;

use super::Provider;
use super::error::{EndpointError, ErrorCode, OAuthError};
use super::token::Credentials;
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::Client;
use crate::domain::secret::{OpaqueToken, kind};

impl Provider {
    /// `POST /revoke`.
    pub async fn revoke(
        &self,
        params: &HashMap<String, String>,
        authorization: Option<&str>,
        actor: &Actor,
    ) -> Result<(), EndpointError> {
        // RFC 7009 §2.1: the client authenticates as at the token endpoint.
        let client = self
            .authenticate_client(&Credentials {
                authorization,
                params,
            })
            .await?;
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let token = get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        // `token_type_hint` only speeds up the lookup (§2.1): both kinds are recognisable
        // by their shape, so it is not needed and any value is accepted.
        match OpaqueToken::parse(token) {
            Some(opaque) => self.revoke_refresh_token(&client, &opaque, actor).await,
            None => self.revoke_access_token(&client, token, actor).await,
        }
    }

    /// RFC 7009 §2.1: a refresh token of this client revokes its whole family.
    async fn revoke_refresh_token(
        &self,
        client: &Client,
        token: &OpaqueToken<kind::RefreshToken>,
        actor: &Actor,
    ) -> Result<(), EndpointError> {
        let now = self.clock.now();
        let Some(record) = self.store.find_refresh_token(&token.hash()).await? else {
            // §2.2: an invalid or unknown token is not an error.
            return Ok(());
        };
        if record.client_id != client.id {
            return Err(foreign().into());
        }
        let audit = AuditEvent::new(
            now,
            AuditKind::RefreshFamilyRevoked,
            Outcome::Success,
            actor,
        )
        .client(client.id.as_str())
        .user(record.user_id)
        .detail("family", record.family_id.to_string())
        .detail("reason", "revoked by the client (RFC 7009)");
        self.store
            .revoke_refresh_family(record.family_id, now, "client_revoked", &audit)
            .await?;
        Ok(())
    }

    /// RFC 7009 §2: an access token is denylisted by `jti` until it expires. An invalid
    /// or already expired one needs nothing (§2.2).
    async fn revoke_access_token(
        &self,
        client: &Client,
        token: &str,
        actor: &Actor,
    ) -> Result<(), EndpointError> {
        let now = self.clock.now();
        let Ok(claims) = self.access_token_claims(token) else {
            return Ok(());
        };
        if claims.client_id != client.id.as_str() {
            return Err(foreign().into());
        }
        let (Ok(jti), Ok(expires_at)) = (
            Uuid::parse_str(&claims.jti),
            time::OffsetDateTime::from_unix_timestamp(claims.exp),
        ) else {
            return Ok(());
        };
        let audit = AuditEvent::new(now, AuditKind::TokenRevoked, Outcome::Success, actor)
            .client(client.id.as_str())
            .detail("token_type", "access_token")
            .detail("jti", jti.to_string());
        self.store
            .revoke_access_token(jti, expires_at, &audit)
            .await?;
        Ok(())
    }
}

/// §2.1: a token issued to another client is refused, and nothing changes.
fn foreign() -> OAuthError {
    OAuthError::new(
        ErrorCode::UnauthorizedClient,
        "the token was not issued to this client",
    )
}
