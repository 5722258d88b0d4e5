//! OAuth clients: identifiers, kinds, authentication methods and the redirect URI rules
//! (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §2.1: exact matching, no wildcards).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

pub use super::client_kind::ClientKind;
use super::jws::SigningAlg;
use super::redirect_uri::{RedirectUri, UnregistrableRedirectUri, is_loopback};
use super::scope::ScopeSet;
use super::secret::{TokenHash, kind};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    /// 1–128 characters of RFC 3986 "unreserved", so the id is safe in URLs and headers.
    pub fn parse(raw: &str) -> Result<Self, ClientError> {
        let ok = (1..=128).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        ok.then(|| Self(raw.to_owned()))
            .ok_or(ClientError::BadClientId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the token endpoint hands a refresh token to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenDelivery {
    /// In the JSON response (RFC 6749 §5.1).
    #[default]
    Body,
    /// In an `HttpOnly; SameSite=Strict; Path=/token` cookie, never visible to script:
    /// browser apps on the provider's site only.
    Cookie,
}

impl TokenDelivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Body => "body",
            Self::Cookie => "cookie",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "body" => Some(Self::Body),
            "cookie" => Some(Self::Cookie),
            _ => None,
        }
    }
}

/// `token_endpoint_auth_method` (RFC 7591 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// A grant type a client may be registered for (RFC 6749 §4.1, §4.4, §6; RFC 7591 §2).
/// The derived order is the order they are listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub const ALL: [GrantType; 3] = [
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::ClientCredentials,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    /// The `grant_type` value of a token request or a registration.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl std::fmt::Display for GrantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The grant types a client holds: a set, listed in `GrantType` order.
pub type GrantTypes = std::collections::BTreeSet<GrantType>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("a client_id is 1-128 characters of letters, digits and - . _ ~")]
    BadClientId,
    #[error(transparent)]
    BadRedirectUri(#[from] UnregistrableRedirectUri),
    #[error("origin `{0}` must be scheme://host[:port] with no path")]
    BadOrigin(String),
    #[error("{0}")]
    Inconsistent(&'static str),
}

/// Validates a CORS origin at registration.
pub fn validate_origin(raw: &str) -> Result<String, ClientError> {
    let bad = || ClientError::BadOrigin(raw.to_owned());
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad());
    }
    let url = Url::parse(raw).map_err(|_| bad())?;
    let origin = url.origin();
    if !origin.is_tuple() || !matches!(url.scheme(), "https" | "http") {
        return Err(bad());
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        return Err(bad());
    }
    let serialized = origin.ascii_serialization();
    if raw.trim_end_matches('/') != serialized {
        return Err(bad());
    }
    Ok(serialized)
}

#[derive(Debug, Clone, Serialize)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub kind: ClientKind,
    pub auth_method: AuthMethod,
    #[serde(skip)]
    pub secret_hash: Option<TokenHash<kind::ClientSecret>>,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub allowed_origins: Vec<String>,
    pub grant_types: GrantTypes,
    pub scopes: ScopeSet,
    pub first_party: bool,
    /// How refresh tokens reach this client (cookie: SPA clients only).
    pub refresh_token_delivery: TokenDelivery,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// OpenID Connect Dynamic Client Registration §2: ID tokens for this client are
    /// signed with this algorithm (RS256 unless registered otherwise). Access tokens are
    /// always RS256.
    pub id_token_signed_response_alg: SigningAlg,
    /// PKCE (RFC 7636, S256) is required of this client's authorization requests. Always
    /// true for public clients (RFC 9700 §2.1.1); a confidential client may be registered
    /// without it. A challenge it does send is enforced either way, and a code issued
    /// without one is never redeemed with a verifier (RFC 9700 §4.8.2).
    pub require_pkce: bool,
    /// A suspended client: refused at the authorization and token endpoints, and its
    /// access tokens are refused while it stays disabled (they work again, until they
    /// expire, once it is enabled).
    pub disabled: bool,
    /// May introspect access tokens issued to other clients (RFC 7662 §4: the server
    /// decides who may introspect what). A client may always introspect its own tokens.
    pub introspection: bool,
    /// Its users must authenticate with a second factor (`acr` multi-factor); one
    /// without a usable factor is told to set one up, never given a weaker level.
    pub require_mfa: bool,
}

impl Client {
    /// The registered redirect URI `requested` matches (see `RedirectUri::matches`:
    /// exact, with any loopback port for a native client only).
    pub fn redirect_uri_matches(&self, requested: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|registered| registered.matches(requested, self.kind))
    }

    /// The same rule for post-logout redirect URIs, without the loopback port freedom.
    pub fn post_logout_redirect_uri_matches(&self, requested: &str) -> bool {
        self.post_logout_redirect_uris
            .iter()
            .any(|r| r.as_str() == requested)
    }

    /// Whether authorization requests must carry a PKCE challenge: always for public
    /// clients (RFC 9700 §2.1.1), whatever the stored flag says.
    pub fn pkce_required(&self) -> bool {
        self.require_pkce || self.kind != ClientKind::Confidential
    }

    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

#[cfg(test)]
impl Client {
    /// A client of `kind` for unit tests: the authorization_code grant, `openid`, no redirect
    /// URIs, no secret; tests set the fields they are about with `..Client::fixture(…)`.
    pub(crate) fn fixture(id: &str, kind: ClientKind) -> Self {
        Self {
            id: ClientId::parse(id).unwrap_or_else(|e| panic!("{e}")),
            name: "App".into(),
            kind,
            auth_method: match kind {
                ClientKind::Confidential => AuthMethod::ClientSecretBasic,
                _ => AuthMethod::None,
            },
            secret_hash: None,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            allowed_origins: vec![],
            grant_types: GrantTypes::from([GrantType::AuthorizationCode]),
            scopes: ScopeSet::parse("openid").unwrap_or_default(),
            first_party: false,
            refresh_token_delivery: TokenDelivery::Body,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            id_token_signed_response_alg: SigningAlg::RS256,
            require_pkce: true,
            disabled: false,
            introspection: false,
            require_mfa: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uris: &[&str]) -> Client {
        Client {
            redirect_uris: uris
                .iter()
                .map(|s| RedirectUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")))
                .collect(),
            ..Client::fixture("app", ClientKind::Native)
        }
    }

    #[test]
    fn exact_matching_with_loopback_port_freedom() {
        let c = client(&[
            "https://app.example.com/cb",
            "http://127.0.0.1/callback",
            "http://[::1]:9/cb",
        ]);
        assert!(c.redirect_uri_matches("https://app.example.com/cb"));
        assert!(!c.redirect_uri_matches("https://app.example.com/cb/"));
        assert!(!c.redirect_uri_matches("https://app.example.com/cb?x=1"));
        assert!(!c.redirect_uri_matches("https://APP.example.com/cb"));
        assert!(c.redirect_uri_matches("http://127.0.0.1:51234/callback"));
        assert!(c.redirect_uri_matches("http://127.0.0.1/callback"));
        assert!(c.redirect_uri_matches("http://[::1]:4000/cb"));
        assert!(c.redirect_uri_matches("http://[::1]/cb"));
        assert!(!c.redirect_uri_matches("http://127.0.0.1:51234/other"));
        assert!(!c.redirect_uri_matches("http://127.0.0.2:51234/callback"));
        assert!(!c.redirect_uri_matches("http://localhost:51234/callback"));
        assert!(!c.redirect_uri_matches("https://127.0.0.1:51234/callback"));
        assert!(!c.redirect_uri_matches("http://127.0.0.1:51234/callback#x"));
    }

    // Issue 11 item 3 (RFC 9700 §2.1, §4.1.3; RFC 8252 §7.3): only the port of a
    // loopback redirect may differ, only for native clients, and only the port.
    #[test]
    fn other_spellings_of_a_loopback_redirect_never_match() {
        const REGISTERED: &str = "http://127.0.0.1:8400/cb";
        let spellings = [
            "http://127.1:8400/cb",
            "http://2130706433:8400/cb",
            "http://0x7f.0.0.1:8400/cb",
            "http://127.000.000.001:8400/cb",
            "http:\\\\127.0.0.1:8400\\cb",
            "http:/127.0.0.1:8400/cb",
            "HTTP://127.0.0.1:8400/cb",
            "http://127.0.0.1:8400/x/../cb",
            "http://127.0.0.1:8400/./cb",
            "http://127.0.0.1:8400/CB",
            "http://127.0.0.1:8400/cb/",
            "http://127.0.0.1:08400/cb",
            "http://127.0.0.1:0/cb",
            "http://127.0.0.1:65536/cb",
            "http://127.0.0.1:/cb",
            " http://127.0.0.1:8400/cb",
            "http://127.0.0.1:8400/cb ",
            "http://127.0.0.1:8400/cb%20",
            "http://user@127.0.0.1:8400/cb",
            "http://127.0.0.1:8400/cb?x=1",
            "http://127.0.0.1:8400/cb#f",
            "http://[::ffff:127.0.0.1]:8400/cb",
            "http://localhost:8400/cb",
        ];
        for kind in [
            ClientKind::Native,
            ClientKind::Spa,
            ClientKind::Confidential,
        ] {
            let mut c = client(&[REGISTERED]);
            c.kind = kind;
            assert!(c.redirect_uri_matches(REGISTERED), "{kind:?}");
            for spelling in spellings {
                assert!(
                    !c.redirect_uri_matches(spelling),
                    "{spelling} must not match for a {kind:?} client"
                );
            }
            // Another port: native clients only.
            let other_port = c.redirect_uri_matches("http://127.0.0.1:51234/cb");
            assert_eq!(other_port, kind == ClientKind::Native, "{kind:?}");
            assert_eq!(
                c.redirect_uri_matches("http://127.0.0.1/cb"),
                kind == ClientKind::Native,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn origins_are_bare() {
        assert_eq!(
            validate_origin("https://app.example.com").ok().as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            validate_origin("http://localhost:5173/").ok().as_deref(),
            Some("http://localhost:5173")
        );
        assert!(validate_origin("https://app.example.com/path").is_err());
        assert!(validate_origin("http://app.example.com").is_err());
        assert!(validate_origin("null").is_err());
    }

    #[test]
    fn grant_types_parse_and_list_in_order() {
        for grant in GrantType::ALL {
            assert_eq!(GrantType::parse(grant.as_str()), Some(grant));
        }
        assert_eq!(GrantType::parse("password"), None);
        assert_eq!(GrantType::parse("implicit"), None);
        let set = GrantTypes::from([GrantType::ClientCredentials, GrantType::AuthorizationCode]);
        assert_eq!(
            serde_json::to_value(&set).unwrap_or_default(),
            serde_json::json!(["authorization_code", "client_credentials"])
        );
    }

    #[test]
    fn delivery_parses() {
        assert_eq!(TokenDelivery::parse("cookie"), Some(TokenDelivery::Cookie));
        assert_eq!(TokenDelivery::parse("body"), Some(TokenDelivery::Body));
        assert_eq!(TokenDelivery::parse("header"), None);
    }

    #[test]
    fn client_ids_are_url_safe() {
        assert!(ClientId::parse("my-app_1.0~x").is_ok());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("a b").is_err());
        assert!(ClientId::parse(&"a".repeat(129)).is_err());
    }
}
