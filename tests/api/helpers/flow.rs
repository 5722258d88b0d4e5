//! The flows a browser and a relying party drive against a running server, written once
//! for the API tests (`tests/api/helpers/`) and the load bench (`benches/load/`, which
//! includes this file): the sign-in pages, PKCE (RFC 7636), the code exchange (RFC 6749
//! §4.1.3) and the refresh (RFC 6749 §6) at `/token`. Plain functions of a base URL and a
//! `reqwest::Client`; a failure is an error, never a panic, so the bench can report it and
//! a test can `expect` it.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use reqwest::header::{HeaderMap, HeaderValue, ORIGIN};
use reqwest::{Client, RequestBuilder, Response, StatusCode};

const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

/// A cookie-keeping client that behaves like a browser posting forms from our pages: it
/// sends `origin` as its `Origin` and never follows redirects.
pub fn browser(origin: &str, timeout: Duration) -> Result<Client> {
    let mut headers = HeaderMap::new();
    headers.insert(
        ORIGIN,
        HeaderValue::from_str(origin).context("origin header")?,
    );
    headers.insert(
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .default_headers(headers)
        .build()
        .context("http client")
}

/// The value of the hidden `<input name="{name}">` of a rendered form.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// The hidden fields of a rendered sign-in form.
#[derive(Debug, Clone)]
pub struct LoginForm {
    pub tx: String,
    pub csrf_token: String,
}

/// Loads `/login` in `client` (it must answer 200) and returns its hidden fields.
pub async fn login_form(client: &Client, base: &str) -> Result<LoginForm> {
    let response = client.get(format!("{base}/login")).send().await?;
    if response.status() != StatusCode::OK {
        bail!("GET /login answered {}", response.status());
    }
    let html = response.text().await?;
    Ok(LoginForm {
        tx: hidden_field(&html, "tx").ok_or_else(|| anyhow!("no tx field on /login"))?,
        csrf_token: hidden_field(&html, "csrf_token")
            .ok_or_else(|| anyhow!("no csrf_token field on /login"))?,
    })
}

/// The post of a sign-in form with these credentials.
pub fn login_request(
    client: &Client,
    base: &str,
    form: &LoginForm,
    username: &str,
    password: &str,
) -> RequestBuilder {
    client.post(format!("{base}/login")).form(&[
        ("tx", form.tx.as_str()),
        ("csrf_token", form.csrf_token.as_str()),
        ("username", username),
        ("password", password),
    ])
}

/// A full sign-in through the pages in `client`, which must succeed (303); returns the
/// answer to the form post (it sets the session cookie).
pub async fn sign_in(
    client: &Client,
    base: &str,
    username: &str,
    password: &str,
) -> Result<Response> {
    let form = login_form(client, base).await?;
    let response = login_request(client, base, &form, username, password)
        .send()
        .await?;
    if response.status() != StatusCode::SEE_OTHER {
        bail!("the sign-in of {username} answered {}", response.status());
    }
    Ok(response)
}

/// A PKCE pair (RFC 7636 §4.1–4.2): a fresh 64-character verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Result<Self> {
        let verifier = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let challenge = portcullis::domain::pkce::challenge_for_verifier(&verifier)
            .map_err(|e| anyhow!("PKCE verifier: {e}"))?
            .as_str()
            .to_owned();
        Ok(Self {
            verifier,
            challenge,
        })
    }
}

/// `POST /token` redeeming `code` with its PKCE verifier (RFC 6749 §4.1.3, RFC 7636
/// §4.5): `client_secret_basic` with a secret, else a public client naming itself.
pub fn code_exchange(
    client: &Client,
    base: &str,
    client_id: &str,
    secret: Option<&str>,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> RequestBuilder {
    let mut request = client.post(format!("{base}/token"));
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    match secret {
        Some(secret) => request = request.basic_auth(client_id, Some(secret)),
        None => form.push(("client_id", client_id)),
    }
    request.form(&form)
}

/// `POST /token` presenting a refresh token (RFC 6749 §6), with `extra` parameters
/// (`scope`, …): `client_secret_basic` with a secret, else a public client naming itself.
pub fn refresh_request(
    client: &Client,
    base: &str,
    client_id: &str,
    secret: Option<&str>,
    token: &str,
    extra: &[(&str, &str)],
) -> RequestBuilder {
    let mut request = client.post(format!("{base}/token"));
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    match secret {
        Some(secret) => request = request.basic_auth(client_id, Some(secret)),
        None => form.push(("client_id", client_id)),
    }
    form.extend_from_slice(extra);
    request.form(&form)
}
