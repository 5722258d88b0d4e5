//! The claims of the tokens Portcullis issues, and the user claims scopes release.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::domain::claims::USER_CLAIMS;
use crate::domain::jws::SigningAlg;
use crate::domain::scope::ScopeSet;
use crate::domain::user::User;

/// A JWT access token (RFC 9068 §2.2), header `typ: at+jwt`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The resource: the provider itself (its userinfo endpoint) unless a resource is
    /// requested (RFC 9068 §3).
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Client tokens (client_credentials) only: which client secret obtained the token
    /// (see `secret_generation`), so rotating a leaked secret also ends its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sgen: Option<String>,
    /// Portcullis's private claim: the claims the `claims` request parameter asked for at
    /// the UserInfo endpoint (OpenID Connect Core §5.5), beyond what `scope` releases.
    /// Carried in the (signed) token so `/userinfo` needs no lookup of the grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uic: Vec<String>,
}

/// A short, non-reversible fingerprint of a client's stored secret hash: tokens carry it
/// and are refused once the secret has been rotated (no clocks involved).
pub fn secret_generation(
    secret_hash: &crate::domain::secret::TokenHash<crate::domain::secret::kind::ClientSecret>,
) -> String {
    let digest =
        Sha256::digest([b"portcullis/sgen/v1:".as_slice(), secret_hash.as_bytes()].concat());
    URL_SAFE_NO_PAD.encode(&digest[..9])
}

/// Whether a client token was obtained with the client's current secret.
pub fn token_matches_secret(
    claims: &AccessTokenClaims,
    client: &crate::domain::client::Client,
) -> bool {
    match (&claims.sgen, &client.secret_hash) {
        (Some(sgen), Some(hash)) => {
            crate::domain::secret::constant_time_eq(sgen, &secret_generation(hash))
        }
        _ => false,
    }
}

/// An ID token (OpenID Connect Core §2), header `typ: JWT`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub azp: String,
    pub iat: i64,
    pub exp: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The authentication context class reached (OpenID Connect Core §2): see
    /// `domain::mfa::AuthLevel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(flatten)]
    pub user: UserClaims,
}

/// Standard claims (OpenID Connect Core §5.1) released by scope (§5.4).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

impl UserClaims {
    pub fn for_scope(user: &User, scope: &ScopeSet) -> Self {
        Self::release(user, scope, [])
    }

    /// The claims `scope` releases (Core §5.4) and, besides, the `requested` ones
    /// (Core §5.5); names Portcullis does not hold are skipped.
    pub fn release<'a>(
        user: &User,
        scope: &ScopeSet,
        requested: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut claims = Self::default();
        let by_scope = USER_CLAIMS
            .iter()
            .filter(|(_, s)| scope.contains(s))
            .map(|(claim, _)| *claim);
        for claim in by_scope.chain(requested) {
            claims.add(user, claim);
        }
        claims
    }

    fn add(&mut self, user: &User, claim: &str) {
        match claim {
            "name" => self.name = user.name.clone().filter(|n| !n.is_empty()),
            "preferred_username" => {
                self.preferred_username = Some(user.username.as_str().to_owned());
            }
            "updated_at" => self.updated_at = Some(user.updated_at.unix_timestamp()),
            "email" => self.email.clone_from(&user.email),
            // Only about an address the user has.
            "email_verified" => {
                self.email_verified = user.email.as_ref().map(|_| user.email_verified);
            }
            _ => {}
        }
    }
}

/// `at_hash` (OpenID Connect Core §3.1.3.6): the left half of SHA-256 of the access token,
/// base64url, for RS256/ES256/PS256.
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// `at_hash` for an ID token signed with `alg`: the left half of the hash the algorithm
/// uses. For EdDSA over Ed25519 that is SHA-512 (RFC 8032 §5.1; the OpenID Connect working
/// group's reading, issue 1125, followed by the `openidconnect` and go-jose libraries).
pub fn at_hash_for(alg: SigningAlg, access_token: &str) -> String {
    match alg {
        SigningAlg::RS256 | SigningAlg::ES256 => at_hash(access_token),
        SigningAlg::EdDSA => {
            let digest = Sha512::digest(access_token.as_bytes());
            URL_SAFE_NO_PAD.encode(&digest[..32])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OpenID Connect Core, Appendix A.3/A.4 use this access token.
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        assert_eq!(at_hash_for(SigningAlg::ES256, token), at_hash(token));
        let eddsa = at_hash_for(SigningAlg::EdDSA, token);
        let expected = Sha512::digest(token.as_bytes());
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&eddsa).unwrap_or_default(),
            expected[..32]
        );
    }
}
