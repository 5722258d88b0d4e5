//! OpenID Connect Discovery 1.0 §3 and RFC 8414 metadata, built from the same values that
//! drive behaviour, so it never advertises what the server refuses.

use serde_json::{Value, json};

use super::Provider;
use crate::domain::mfa::AuthLevel;

/// Client authentication at the token and revocation endpoints (`authenticate_client`):
/// public clients name themselves with `none`.
const AUTH_METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "none"];

/// Client authentication at the introspection endpoint: only confidential clients may
/// introspect (RFC 7662 §2.1), so `none` is not accepted there.
const INTROSPECTION_AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// Scopes Portcullis knows how to describe and release claims for.
pub const SCOPES_SUPPORTED: [&str; 4] = ["openid", "profile", "email", "offline_access"];
pub const CLAIMS_SUPPORTED: [&str; 15] = [
    "iss",
    "sub",
    "aud",
    "azp",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "sid",
    "acr",
    "amr",
    "name",
    "preferred_username",
    "email",
];

impl Provider {
    /// `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        let mut doc = self.authorization_server_metadata();
        if let Value::Object(map) = &mut doc {
            let extra = json!({
                "userinfo_endpoint": self.endpoint("/userinfo"),
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": self.keys.algorithms(),
                "claims_supported": CLAIMS_SUPPORTED.iter().chain(["email_verified", "updated_at"].iter()).collect::<Vec<_>>(),
                // OpenID Connect Core §5.5, for the claims Portcullis holds.
                "claims_parameter_supported": true,
                // OpenID Connect Discovery §3: the levels of `domain::mfa::AuthLevel`,
                // lowest first (docs/authentication.md).
                "acr_values_supported": AuthLevel::ALL.map(AuthLevel::acr),
                "request_parameter_supported": false,
                "request_uri_parameter_supported": false,
                "require_request_uri_registration": false,
                "prompt_values_supported": ["none", "login", "consent", "select_account"],
                "display_values_supported": ["page", "popup"],
                // RP-Initiated Logout 1.0 §2.1.
                "end_session_endpoint": self.endpoint("/logout"),
            });
            if let Value::Object(extra) = extra {
                map.extend(extra);
            }
        }
        doc
    }

    /// `/.well-known/oauth-authorization-server` (RFC 8414 §2).
    pub fn authorization_server_metadata(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.endpoint("/authorize"),
            "token_endpoint": self.endpoint("/token"),
            "jwks_uri": self.endpoint("/jwks.json"),
            "scopes_supported": SCOPES_SUPPORTED,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            // RFC 7009 and RFC 7662 (metadata names from RFC 8414 §2).
            "revocation_endpoint": self.endpoint("/revoke"),
            "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
            "introspection_endpoint": self.endpoint("/introspect"),
            "introspection_endpoint_auth_methods_supported": INTROSPECTION_AUTH_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
        })
    }
}
