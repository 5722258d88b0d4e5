//! The sign-in flow of a native (mobile or desktop) app, built on the `oauth2` crate:
//! discovery, a loopback redirect on an ephemeral port (RFC 8252 §7.3), the authorization
//! code grant with PKCE (RFC 7636), ID token checks (OpenID Connect Core §3.1.3.7), refresh
//! with rotation (RFC 6749 §6) and revocation on sign-out (RFC 7009).
//!
//! A native app is a *public* client (RFC 6749 §2.1, RFC 8252 §8.4): anything shipped in
//! its binary can be extracted, so it has no client secret and proves possession of the
//! authorization request with PKCE instead. Tokens live in this process's memory only.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AccessToken, AuthUrl, AuthorizationCode, ClientId, ConfigurationError, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, ExtraTokenFields, PkceCodeChallenge,
    RedirectUrl, RefreshToken, RevocableToken as _, RevocationUrl, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use url::Url;

/// How long the app waits for the browser to come back.
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long one connection to the loopback listener may take to send its request head.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest request head the loopback listener reads.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The path of the redirect URI registered for the app (`http://127.0.0.1/callback`).
pub const CALLBACK_PATH: &str = "/callback";
/// What the app asks for unless told otherwise.
pub const DEFAULT_SCOPE: &str = "openid profile email";
/// ID token algorithms the app accepts: asymmetric only, so a public key can never be
/// (mis)used as an HMAC secret.
const ID_TOKEN_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Why a sign-in ended at the loopback listener.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallbackError {
    /// RFC 6749 §10.12: the response does not carry the `state` this app sent, so this app
    /// did not start it (cross-site request forgery, or a stale browser tab).
    #[error("the callback's state does not match the request's (RFC 6749 §10.12)")]
    StateMismatch,
    /// RFC 9207 §2.4: the response names another issuer (a mix-up attack) or none where
    /// the provider promised one.
    #[error("the callback's iss does not name the issuer (RFC 9207)")]
    IssuerMismatch,
    /// RFC 6749 §4.1.2.1: the provider answered with an error, e.g. `access_denied`.
    #[error("the provider refused the sign-in: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    /// The callback is not a valid authorization response.
    #[error("malformed callback: {0}")]
    Malformed(&'static str),
    /// The loopback listener could not accept connections.
    #[error("the loopback listener failed: {0}")]
    Listener(String),
    /// Nobody came back in time.
    #[error("no callback within {0:?}")]
    TimedOut(Duration),
}

/// The provider's metadata (OpenID Connect Discovery 1.0 §3, RFC 8414 §2).
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Url,
    pub jwks_uri: Url,
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// The `id_token` member of a token response (OpenID Connect Core §3.1.3.3), which the
/// plain OAuth 2.0 response type does not know.
#[derive(Clone, Deserialize, Serialize)]
pub struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl std::fmt::Debug for IdTokenField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdTokenField(..)")
    }
}

impl ExtraTokenFields for IdTokenField {}

type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// An `oauth2` client with the endpoints discovery found.
type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointSet,
>;

/// The verified claims of an ID token (OpenID Connect Core §2).
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub auth_time: Option<i64>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
}

/// The UserInfo response (OpenID Connect Core §5.3.2).
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    pub sub: String,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
}

/// A signed-in user's tokens, in memory only. `AccessToken` and `RefreshToken` print as
/// `[redacted]` in `Debug`.
#[derive(Debug)]
pub struct Session {
    pub access_token: AccessToken,
    pub refresh_token: Option<RefreshToken>,
    pub expires_in: Option<Duration>,
    /// The granted scope (RFC 6749 §5.1: the requested one when the response omits it).
    pub scope: String,
    pub id: IdClaims,
}

/// A native app registered at one provider.
pub struct NativeApp {
    http: reqwest::Client,
    metadata: Metadata,
    jwks: JwkSet,
    client_id: ClientId,
    oauth: OAuthClient,
    scope: String,
    callback_timeout: Duration,
}

impl NativeApp {
    /// Reads `{issuer}/.well-known/openid-configuration` and the provider's keys.
    pub async fn discover(issuer: &str, client_id: &str) -> Result<Self> {
        let given = issuer;
        // OpenID Connect Discovery §4.1: the path is appended after any trailing slash.
        let issuer = issuer.trim_end_matches('/');
        let issuer_url = Url::parse(issuer).context("the issuer is not a URL")?;
        // RFC 6749 §3.1, §3.2: the endpoints require TLS; plain http only on loopback,
        // where no network lies between app and provider (as Portcullis itself allows).
        ensure!(
            issuer_url.scheme() == "https" || is_loopback(&issuer_url),
            "the issuer must use https (plain http only on loopback)"
        );
        // SECURITY: the provider's answers are never followed elsewhere (no redirects),
        // so a tampered response cannot point our requests at a third host.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        let metadata: Metadata =
            get_json(&http, &format!("{issuer}/.well-known/openid-configuration"))
                .await
                .context("discovery")?;
        // OpenID Connect Discovery §4.3: the document must name exactly the issuer we asked.
        ensure!(
            metadata.issuer == issuer || metadata.issuer == given,
            "discovery names the issuer {:?}, not {given:?}",
            metadata.issuer
        );
        // Tokens and codes are sent to these: TLS, or loopback, like the issuer.
        let endpoints = [
            Some(&metadata.authorization_endpoint),
            Some(&metadata.token_endpoint),
            Some(&metadata.userinfo_endpoint),
            Some(&metadata.jwks_uri),
            metadata.revocation_endpoint.as_ref(),
        ];
        for endpoint in endpoints.into_iter().flatten() {
            ensure!(
                endpoint.scheme() == "https" || is_loopback(endpoint),
                "the endpoint {endpoint} must use https"
            );
        }
        // RFC 7636 §4.2 / RFC 8414 §2: S256 must be supported, as we never send `plain`.
        ensure!(
            metadata
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256"),
            "the provider does not announce PKCE S256"
        );
        let jwks: JwkSet = get_json(&http, metadata.jwks_uri.as_str())
            .await
            .context("fetching the provider's keys")?;
        let oauth = oauth2::Client::new(ClientId::new(client_id.to_owned()))
            .set_auth_uri(AuthUrl::from_url(metadata.authorization_endpoint.clone()))
            .set_token_uri(TokenUrl::from_url(metadata.token_endpoint.clone()))
            .set_revocation_url_option(
                metadata
                    .revocation_endpoint
                    .clone()
                    .map(RevocationUrl::from_url),
            );
        Ok(Self {
            http,
            metadata,
            jwks,
            client_id: ClientId::new(client_id.to_owned()),
            oauth,
            scope: DEFAULT_SCOPE.to_owned(),
            callback_timeout: DEFAULT_CALLBACK_TIMEOUT,
        })
    }

    /// Asks for `scope` (space-separated; `openid` is always included).
    pub fn with_scope(mut self, scope: &str) -> Self {
        let mut scopes: Vec<&str> = vec!["openid"];
        scopes.extend(scope.split_whitespace().filter(|s| *s != "openid"));
        self.scope = scopes.join(" ");
        self
    }

    /// Waits at most `timeout` for the browser to come back.
    pub fn with_callback_timeout(mut self, timeout: Duration) -> Self {
        self.callback_timeout = timeout;
        self
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Signs the user in: listens on a loopback port, hands the authorization URL to
    /// `open` (which shows it in the system browser), accepts the one callback, and
    /// redeems the code.
    pub async fn login(&self, open: impl FnOnce(&Url)) -> Result<Session> {
        // RFC 8252 §7.3: an ephemeral port on the loopback interface, bound to the IP
        // literal rather than `localhost` (§8.3), so no other interface can reach it and
        // no name resolution can redirect it.
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding a loopback port")?;
        let port = listener.local_addr()?.port();
        let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
        // RFC 6749 §4.1.3: the token request repeats the redirect URI, so the client that
        // redeems the code is configured with this port too.
        let client = self
            .oauth
            .clone()
            .set_redirect_uri(RedirectUrl::new(redirect_uri)?);
        // RFC 7636 §4.1-4.2 and RFC 8252 §8.1: a fresh verifier per request, sent as S256.
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        // OpenID Connect Core §3.1.2.1: the nonce binds the ID token to this request.
        let nonce = CsrfToken::new_random();
        let (url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scope.split(' ').map(|s| Scope::new(s.to_owned())))
            .add_extra_param("nonce", nonce.secret())
            .set_pkce_challenge(challenge)
            .url();
        open(&url);
        let expected = Expected {
            state: state.secret().clone(),
            issuer: self.metadata.issuer.clone(),
            iss_required: self.metadata.authorization_response_iss_parameter_supported,
        };
        let code = receive_callback(listener, expected, self.callback_timeout).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .context("redeeming the authorization code")?;
        let id_token = response
            .extra_fields()
            .id_token
            .as_deref()
            .ok_or_else(|| anyhow!("the token response has no ID token"))?;
        let id = self.verify_id_token(id_token, Some(nonce.secret())).await?;
        Ok(Session {
            access_token: response.access_token().clone(),
            refresh_token: response.refresh_token().cloned(),
            expires_in: response.expires_in(),
            scope: granted_scope(&response, &self.scope),
            id,
        })
    }

    /// Calls the UserInfo endpoint with the access token (RFC 6750 §2.1).
    pub async fn userinfo(&self, session: &Session) -> Result<UserInfo> {
        let response = self
            .http
            .get(self.metadata.userinfo_endpoint.clone())
            .bearer_auth(session.access_token.secret())
            .send()
            .await
            .context("calling the UserInfo endpoint")?;
        if !response.status().is_success() {
            // RFC 6750 §3: the reason is in the challenge, not in a body.
            let challenge = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            bail!(
                "UserInfo refused the access token: {} {challenge}",
                response.status()
            );
        }
        let info: UserInfo = response.json().await.context("reading UserInfo")?;
        // OpenID Connect Core §5.3.2: the `sub` must be the ID token's, or the response
        // is about someone else and must not be used.
        ensure!(
            info.sub == session.id.sub,
            "UserInfo describes another subject"
        );
        Ok(info)
    }

    /// Redeems the refresh token (RFC 6749 §6). Portcullis rotates it: the returned
    /// session holds a new one and the old one is spent.
    pub async fn refresh(&self, session: &Session) -> Result<Session> {
        let refresh_token = session
            .refresh_token
            .as_ref()
            .ok_or_else(|| anyhow!("this session has no refresh token"))?;
        let response = self
            .oauth
            .exchange_refresh_token(refresh_token)
            .request_async(&self.http)
            .await
            .context("refreshing")?;
        let id = match response.extra_fields().id_token.as_deref() {
            Some(id_token) => {
                let id = self.verify_id_token(id_token, None).await?;
                // OpenID Connect Core §12.2: a refreshed ID token is about the same user.
                ensure!(
                    id.sub == session.id.sub && id.iss == session.id.iss,
                    "the refreshed ID token is about someone else"
                );
                id
            }
            None => session.id.clone(),
        };
        Ok(Session {
            access_token: response.access_token().clone(),
            // RFC 6749 §6: a new refresh token replaces the old one, which the client
            // must discard; without one, the old one stays in use.
            refresh_token: response
                .refresh_token()
                .cloned()
                .or_else(|| session.refresh_token.clone()),
            expires_in: response.expires_in(),
            scope: granted_scope(&response, &session.scope),
            id,
        })
    }

    /// Signs out: revokes the refresh token (RFC 7009 §2.1), which revokes its whole grant
    /// and, at Portcullis, the access tokens issued from it. Without a refresh token the
    /// access token is revoked. The tokens are dropped from memory with `session`.
    pub async fn revoke(&self, session: Session) -> Result<()> {
        let token = match session.refresh_token {
            Some(refresh_token) => StandardRevocableToken::RefreshToken(refresh_token),
            None => StandardRevocableToken::AccessToken(session.access_token),
        };
        match self.oauth.revoke_token(token.clone()) {
            Ok(request) => request
                .request_async(&self.http)
                .await
                .context("revoking the token")?,
            // RFC 7009 §2 has clients refuse a revocation endpoint without TLS, and the
            // `oauth2` crate enforces it. A provider on plain http is only ever accepted on
            // loopback (see `discover`), where no network lies in between; send it the very
            // same request by hand there.
            Err(ConfigurationError::InsecureUrl(_)) => {
                let endpoint = self
                    .metadata
                    .revocation_endpoint
                    .clone()
                    .ok_or_else(|| anyhow!("the provider has no revocation endpoint"))?;
                ensure!(
                    is_loopback(&endpoint),
                    "the revocation endpoint needs https"
                );
                let response = self
                    .http
                    .post(endpoint)
                    .form(&revocation_form(&self.client_id, &token))
                    .send()
                    .await
                    .context("revoking the token")?;
                if !response.status().is_success() {
                    // RFC 7009 §2.2.1: errors are RFC 6749 §5.2 JSON.
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    bail!(
                        "revocation refused: {status} {}",
                        body["error"].as_str().unwrap_or("")
                    );
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Checks an ID token as OpenID Connect Core §3.1.3.7 asks: the signature with the
    /// provider's key, `iss`, `aud`, `azp`, `exp` and, on sign-in, the `nonce`.
    async fn verify_id_token(&self, token: &str, nonce: Option<&str>) -> Result<IdClaims> {
        let header = jsonwebtoken::decode_header(token).context("the ID token is not a JWT")?;
        let kid = header
            .kid
            .ok_or_else(|| anyhow!("the ID token names no key"))?;
        let fetched;
        let jwk = match self.jwks.find(&kid) {
            Some(jwk) => jwk,
            None => {
                // A key published after discovery (rotation): fetch the set once more.
                fetched = get_json::<JwkSet>(&self.http, self.metadata.jwks_uri.as_str())
                    .await
                    .context("fetching the provider's keys")?;
                fetched
                    .find(&kid)
                    .ok_or_else(|| anyhow!("the ID token's key is not published"))?
            }
        };
        // SECURITY: the algorithm is the key's, never the token header's alone, and only
        // asymmetric ones are accepted (no `none`, no HMAC with a public key).
        let alg = jwk
            .common
            .key_algorithm
            .ok_or_else(|| anyhow!("the provider's key names no algorithm"))
            .and_then(|a| Algorithm::try_from(a).map_err(|e| anyhow!("{e}")))?;
        ensure!(
            ID_TOKEN_ALGORITHMS.contains(&alg) && header.alg == alg,
            "the ID token's algorithm is not acceptable"
        );
        let key = DecodingKey::from_jwk(jwk).context("the provider's key")?;
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.metadata.issuer]);
        validation.set_audience(&[self.client_id.as_str()]);
        validation.set_required_spec_claims(&["iss", "sub", "aud", "exp", "iat"]);
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
            .context("the ID token does not verify")?
            .claims;
        // §3.1.3.7 item 5: an `azp` must name us.
        if let Some(azp) = &claims.azp {
            ensure!(
                azp == self.client_id.as_str(),
                "the ID token's azp is not us"
            );
        }
        // §3.1.3.7 item 11: the nonce we sent comes back, or the token was not minted for
        // this request (replay).
        if let Some(expected) = nonce {
            let got = claims.nonce.as_deref().unwrap_or("");
            ensure!(
                bool::from(got.as_bytes().ct_eq(expected.as_bytes())),
                "the ID token's nonce does not match the request's"
            );
        }
        Ok(claims)
    }
}

/// The form of an RFC 7009 §2.1 revocation request by a public client: the token, its
/// type as a hint, and `client_id` (a client without a secret names itself, RFC 6749
/// §3.2.1). The same form the `oauth2` crate sends.
pub fn revocation_form(
    client_id: &ClientId,
    token: &StandardRevocableToken,
) -> Vec<(String, String)> {
    let mut form = vec![("token".to_owned(), token.secret().to_owned())];
    if let Some(hint) = token.type_hint() {
        form.push(("token_type_hint".to_owned(), hint.to_owned()));
    }
    form.push(("client_id".to_owned(), client_id.as_str().to_owned()));
    form
}

fn granted_scope(response: &TokenResponse, requested: &str) -> String {
    response
        .scopes()
        .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| requested.to_owned())
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Result<T> {
    let response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    ensure!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response
        .json()
        .await
        .with_context(|| format!("GET {url}: not the expected JSON"))
}

// ---------------------------------------------------------------------------------------
// The loopback listener: a minimal HTTP/1.1 server that answers one callback.

/// What a genuine callback carries.
#[derive(Clone)]
struct Expected {
    state: String,
    issuer: String,
    iss_required: bool,
}

/// Accepts connections until one brings a request for the callback path, answers it, and
/// returns its authorization code or why there is none. A wrong `state` ends the attempt
/// rather than waiting for another try: the response was not caused by this app's
/// request, and the code in it must not be redeemed (RFC 6749 §10.12).
async fn receive_callback(
    listener: TcpListener,
    expected: Expected,
    timeout: Duration,
) -> Result<String, CallbackError> {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    // One task per connection, so a browser's idle pre-connection cannot hold up the
    // real request; dropping the set (on return) aborts whatever is left.
    let mut connections: JoinSet<Option<Result<String, CallbackError>>> = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut deadline => return Err(CallbackError::TimedOut(timeout)),
            accepted = listener.accept() => {
                let (stream, _) = accepted.map_err(|e| CallbackError::Listener(e.to_string()))?;
                connections.spawn(serve_connection(stream, expected.clone()));
            }
            Some(done) = connections.join_next() => {
                if let Ok(Some(outcome)) = done {
                    return outcome;
                }
            }
        }
    }
}

/// Reads one request head, answers it, and reports the callback's outcome; `None` for
/// anything that is not the callback (a favicon, a probe, a silent connection).
async fn serve_connection(
    mut stream: TcpStream,
    expected: Expected,
) -> Option<Result<String, CallbackError>> {
    let head = tokio::time::timeout(REQUEST_HEAD_TIMEOUT, read_head(&mut stream))
        .await
        .ok()??;
    let request_line = head.lines().next()?;
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let Ok(url) = Url::parse("http://127.0.0.1").and_then(|base| base.join(target)) else {
        respond(
            &mut stream,
            400,
            "Bad request",
            "This is not a sign-in response.",
        )
        .await;
        return None;
    };
    if url.path() != CALLBACK_PATH {
        respond(&mut stream, 404, "Not found", "Nothing here.").await;
        return None;
    }
    if method != "GET" {
        respond(
            &mut stream,
            405,
            "Method not allowed",
            "Only GET is answered here.",
        )
        .await;
        return None;
    }
    let outcome = check_callback(&url, &expected);
    match &outcome {
        Ok(_) => {
            respond(
                &mut stream,
                200,
                "Signed in",
                "You are signed in. You can close this window and return to the app.",
            )
            .await
        }
        Err(CallbackError::Refused { .. }) => {
            respond(
                &mut stream,
                200,
                "Sign-in not completed",
                "The sign-in was not completed. You can close this window and return to the app.",
            )
            .await
        }
        Err(_) => {
            respond(
                &mut stream,
                400,
                "Unexpected response",
                "This sign-in response does not belong to a sign-in started by the app. \
                 You can close this window.",
            )
            .await
        }
    }
    Some(outcome)
}

/// Validates an authorization response (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207 §2.4).
fn check_callback(url: &Url, expected: &Expected) -> Result<String, CallbackError> {
    let mut params: HashMap<String, String> = HashMap::new();
    for (name, value) in url.query_pairs() {
        // RFC 6749 §3.1: parameters must not be repeated; an ambiguous response is refused.
        if params
            .insert(name.into_owned(), value.into_owned())
            .is_some()
        {
            return Err(CallbackError::Malformed("a parameter is repeated"));
        }
    }
    // SECURITY: `state` first, in constant time: nothing in a response we did not cause
    // is acted upon, not even its error.
    let state = params.get("state").map(String::as_str).unwrap_or("");
    if !bool::from(state.as_bytes().ct_eq(expected.state.as_bytes())) {
        return Err(CallbackError::StateMismatch);
    }
    match params.get("iss") {
        Some(iss) if *iss != expected.issuer => return Err(CallbackError::IssuerMismatch),
        None if expected.iss_required => return Err(CallbackError::IssuerMismatch),
        _ => {}
    }
    if let Some(error) = params.get("error") {
        return Err(CallbackError::Refused {
            error: error.clone(),
            description: params.get("error_description").cloned(),
        });
    }
    params
        .remove("code")
        .filter(|c| !c.is_empty())
        .ok_or(CallbackError::Malformed("no code"))
}

/// The request line and headers, up to the blank line; `None` if the peer sends too much,
/// too little or no text.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_REQUEST_HEAD {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).ok()
}

/// A small fixed page. Nothing from the request is echoed into it, so it cannot carry
/// injected markup.
async fn respond(stream: &mut TcpStream, status: u16, title: &str, message: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title></head>\n<body><h1>{title}</h1><p>{message}</p></body></html>\n"
    );
    // SECURITY: no script, no referrer (the URL carried the code), no caching.
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n\
         Referrer-Policy: no-referrer\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Cache-Control: no-store\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    // The page is a courtesy: a browser that went away changes nothing.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
