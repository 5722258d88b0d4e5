//! The `client_credentials` grant (RFC 6749 §4.4): a confidential client obtains an access
//! token for itself. No user is involved, so there is no ID token, no refresh token
//! (§4.4.3: "A refresh token SHOULD NOT be included") and no user-only scope.

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::{Client, GrantType};
use crate::domain::scope::{ScopeSet, is_user_scope};
use crate::oauth::Provider;
use crate::oauth::claims::AccessTokenClaims;
use crate::oauth::error::{EndpointError, ErrorCode, OAuthError};
use crate::oauth::token::{Issued, TokenResponse};

impl Provider {
    pub(crate) async fn client_credentials_grant(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        actor: &Actor,
    ) -> Result<Issued, EndpointError> {
        // RFC 6749 §4.4: "The client credentials grant type MUST only be used by
        // confidential clients." `authenticate_client` has checked the secret.
        if client.kind.is_public() || client.secret_hash.is_none() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "only confidential clients may use the client_credentials grant",
            )
            .into());
        }
        if !client.allows_grant(GrantType::ClientCredentials) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use the client_credentials grant",
            )
            .into());
        }
        let scope = self.client_credentials_scope(client, params.get("scope"))?;
        let now = self.clock.now();
        let jti = Uuid::new_v4();
        let access_token = self.client_access_token(client, &scope, jti, now)?;
        let issued = AuditEvent::new(now, AuditKind::TokenIssued, Outcome::Success, actor)
            .client(client.id.as_str())
            .detail("grant_type", "client_credentials")
            .detail("jti", jti.to_string())
            .detail("scope", scope.to_string());
        self.store.record_audit(&[issued]).await?;
        Ok(Issued {
            response: TokenResponse {
                access_token,
                token_type: "Bearer".to_owned(),
                expires_in: self.access_token_lifetime.whole_seconds(),
                scope: scope.to_string(),
                // RFC 6749 §4.4.3: no refresh token for client_credentials.
                refresh_token: None,
                id_token: None,
            },
            client_id: client.id.clone(),
            delivery: client.refresh_token_delivery,
            refresh_expires_at: None,
        })
    }

    /// RFC 9068 §2.2: for a token obtained by a client for itself, `sub` is the client's
    /// identifier; no `sid` or `auth_time`, since no one signed in. `sgen` ties it to the
    /// client's current secret.
    fn client_access_token(
        &self,
        client: &Client,
        scope: &ScopeSet,
        jti: Uuid,
        now: OffsetDateTime,
    ) -> Result<String, EndpointError> {
        let expires_at = now + self.access_token_lifetime;
        Ok(self.keys.sign(
            "at+jwt",
            &AccessTokenClaims {
                iss: self.issuer.clone(),
                sub: client.id.to_string(),
                aud: self.issuer.clone(),
                client_id: client.id.to_string(),
                scope: scope.to_string(),
                iat: now.unix_timestamp(),
                exp: expires_at.unix_timestamp(),
                jti: jti.to_string(),
                sid: None,
                auth_time: None,
                sgen: client
                    .secret_hash
                    .as_ref()
                    .map(crate::oauth::claims::secret_generation),
                uic: Vec::new(),
            },
        )?)
    }

    /// RFC 6749 §3.3 and §4.4.2: the requested scope must lie within the client's; without
    /// one, the client's registered scopes that make sense without a user are granted.
    fn client_credentials_scope(
        &self,
        client: &Client,
        requested: Option<&String>,
    ) -> Result<ScopeSet, OAuthError> {
        let invalid = |m: String| OAuthError::new(ErrorCode::InvalidScope, m);
        let Some(raw) = requested else {
            let default = ScopeSet::from_tokens(client.scopes.iter().filter(|s| !is_user_scope(s)));
            if default.is_empty() {
                return Err(invalid(
                    "this client has no scope that can be granted without a user".into(),
                ));
            }
            return Ok(default);
        };
        let scope = ScopeSet::parse(raw).map_err(|_| invalid("scope is malformed".into()))?;
        if scope.is_empty() {
            return Err(invalid("scope is empty".into()));
        }
        let user_only: Vec<&str> = scope.iter().filter(|s| is_user_scope(s)).collect();
        if !user_only.is_empty() {
            return Err(invalid(format!(
                "these scopes need a signed-in user and cannot be granted to a client: {}",
                user_only.join(" ")
            )));
        }
        let unknown = scope.missing_from(&client.scopes);
        if !unknown.is_empty() {
            return Err(invalid(format!(
                "scope not allowed for this client: {}",
                unknown.join(" ")
            )));
        }
        Ok(scope)
    }
}
