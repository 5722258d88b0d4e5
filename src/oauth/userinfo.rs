//! The UserInfo endpoint (OpenID Connect Core §5.3) with bearer tokens (RFC 6750).

use serde_json::{Value, json};
use uuid::Uuid;

use super::Provider;
use super::claims::{AccessTokenClaims, UserClaims};
use super::error::{EndpointError, ErrorCode, OAuthError};
use crate::domain::scope::ScopeSet;
use crate::domain::user::UserId;
use crate::keys::Expectations;

impl Provider {
    /// Verifies the access token strictly and returns the claims its scope allows, and
    /// those the authorization's `claims` parameter asked for here (Core §5.5).
    pub async fn userinfo(&self, token: &str) -> Result<Value, EndpointError> {
        let claims = self.verify_access_token(token).await?;
        let scope = ScopeSet::parse(&claims.scope).unwrap_or_default();
        if !scope.contains("openid") {
            return Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                "the token lacks the openid scope",
            )
            .into());
        }
        let inactive = || OAuthError::invalid_token("the user is no longer active");
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| inactive())?;
        let user = self
            .store
            .find_user_by_id(UserId(user_id))
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(inactive)?;
        let mut body = json!({ "sub": user.id.to_string() });
        if let (Value::Object(map), Ok(Value::Object(extra))) = (
            &mut body,
            serde_json::to_value(UserClaims::release(
                &user,
                &scope,
                claims.uic.iter().map(String::as_str),
            )),
        ) {
            map.extend(extra);
        }
        Ok(body)
    }

    /// A valid, unrevoked access token issued by us for us (RFC 9068 §4).
    pub async fn verify_access_token(
        &self,
        token: &str,
    ) -> Result<AccessTokenClaims, EndpointError> {
        let claims = self.access_token_claims(token)?;
        self.ensure_access_token_live(&claims).await?;
        Ok(claims)
    }

    /// The claims of an access token whose signature, type, issuer, audience and
    /// lifetime check out; whether it was revoked is `ensure_access_token_live`'s part.
    pub fn access_token_claims(&self, token: &str) -> Result<AccessTokenClaims, EndpointError> {
        let claims: AccessTokenClaims = self
            .keys
            .verify(
                token,
                &Expectations {
                    typ: "at+jwt",
                    issuer: &self.issuer,
                    audience: Some(&self.issuer),
                    allow_expired: false,
                },
            )
            .map_err(|_| OAuthError::invalid_token("the access token is invalid or expired"))?;
        Ok(claims)
    }

    /// Refuses a token that was revoked (RFC 7009), whose browser session was revoked
    /// (logout, admin), or whose client was deleted.
    pub async fn ensure_access_token_live(
        &self,
        claims: &AccessTokenClaims,
    ) -> Result<(), EndpointError> {
        let jti = Uuid::parse_str(&claims.jti)
            .map_err(|_| OAuthError::invalid_token("the access token is invalid"))?;
        // A token bound to a browser session dies with it (logout, admin revocation).
        let session = claims
            .sid
            .as_deref()
            .map(|sid| Uuid::parse_str(sid).map(crate::domain::session::SessionId))
            .transpose()
            .map_err(|_| OAuthError::invalid_token("the access token is invalid"))?;
        // A deleted client's tokens end with it (its grants are gone).
        let client = crate::domain::client::ClientId::parse(&claims.client_id)
            .map_err(|_| OAuthError::invalid_token("the access token is invalid"))?;
        if self
            .store
            .is_access_token_revoked(jti, session, &client)
            .await?
        {
            return Err(OAuthError::invalid_token("the access token was revoked").into());
        }
        Ok(())
    }
}
