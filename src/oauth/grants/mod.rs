//! One module per grant type (RFC 6749 §4); `oauth::token` authenticates the client and
//! dispatches here. Minting the JWTs is shared.

mod authorization_code;
mod client_credentials;
mod refresh_token;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::claims::RequestedClaims;
use crate::domain::client::Client;
use crate::domain::mfa::AuthLevel;
use crate::domain::scope::ScopeSet;
use crate::domain::session::SessionId;
use crate::domain::user::{User, UserId};
use crate::keys::KeyError;
use crate::oauth::Provider;
use crate::oauth::claims::{AccessTokenClaims, IdTokenClaims, UserClaims, at_hash_for};
use crate::oauth::error::{EndpointError, OAuthError};

/// What the tokens of one response say about the user and the authentication.
pub(crate) struct Mint<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub scope: &'a ScopeSet,
    /// The browser session the tokens are bound to (their `sid`); none for tokens that
    /// outlive it (offline access).
    pub session: Option<SessionId>,
    pub auth_time: OffsetDateTime,
    pub amr: &'a [String],
    pub nonce: Option<String>,
    /// Claims the `claims` request parameter asked for (OpenID Connect Core §5.5).
    pub claims: &'a RequestedClaims,
    pub jti: Uuid,
    pub now: OffsetDateTime,
}

impl Provider {
    /// The user the tokens are for, unless they were deleted or disabled since the grant
    /// was given.
    pub(crate) async fn active_user(&self, id: UserId) -> Result<User, EndpointError> {
        Ok(self
            .store
            .find_user_by_id(id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(|| OAuthError::invalid_grant("the user is no longer active"))?)
    }

    /// The access token (RFC 9068) and, when the scope holds `openid`, the ID token
    /// (OpenID Connect Core §2, §3.1.3.6 at_hash).
    pub(crate) fn mint(&self, m: &Mint<'_>) -> Result<(String, Option<String>), KeyError> {
        let sid = m.session.map(|s| s.to_string());
        // Claims requested with `claims` (OpenID Connect Core §5.5) are released only while
        // the client is still registered for their scope: a scope taken away would be
        // refused at the next refresh, and so are its claims.
        let claims = m.claims.within(&m.client.scopes);
        let access_token = self.keys.sign(
            "at+jwt",
            &AccessTokenClaims {
                iss: self.issuer.clone(),
                sub: m.user.id.to_string(),
                aud: self.issuer.clone(),
                client_id: m.client.id.to_string(),
                scope: m.scope.to_string(),
                iat: m.now.unix_timestamp(),
                exp: (m.now + self.access_token_lifetime).unix_timestamp(),
                jti: m.jti.to_string(),
                sid: sid.clone(),
                auth_time: Some(m.auth_time.unix_timestamp()),
                sgen: None,
                uic: claims.userinfo.iter().cloned().collect(),
            },
        )?;
        // OpenID Connect Registration §2: the client's id_token_signed_response_alg.
        let id_alg = m.client.id_token_signed_response_alg;
        let id_token = if m.scope.contains("openid") {
            Some(self.keys.sign_with(
                id_alg,
                "JWT",
                &IdTokenClaims {
                    iss: self.issuer.clone(),
                    sub: m.user.id.to_string(),
                    aud: m.client.id.to_string(),
                    azp: m.client.id.to_string(),
                    iat: m.now.unix_timestamp(),
                    exp: (m.now + self.id_token_lifetime).unix_timestamp(),
                    auth_time: m.auth_time.unix_timestamp(),
                    nonce: m.nonce.clone(),
                    at_hash: Some(at_hash_for(id_alg, &access_token)),
                    sid,
                    acr: Some(AuthLevel::of_amr(m.amr).acr().to_owned()),
                    amr: m.amr.to_vec(),
                    user: UserClaims::release(
                        m.user,
                        m.scope,
                        claims.id_token.iter().map(String::as_str),
                    ),
                },
            )?)
        } else {
            None
        };
        Ok((access_token, id_token))
    }
}
