//! The relying party's side of the flows, for tests: the `web-app` registration, the
//! `/authorize` URL, a browser followed through the sign-in and consent pages to a code,
//! and the back-channel requests at `/token` (built by the shared [`super::flow`]).

use portcullis::clients::Registration;
use portcullis::domain::client::ClientKind;
use reqwest::{Client, StatusCode};
use url::Url;

use super::flow::{self, LoginForm, Pkce, hidden_field};
use super::{PASSWORD, TestApp};

pub const WEB_REDIRECT: &str = "https://app.example.com/callback";

pub fn web_app(first_party: bool) -> Registration {
    Registration {
        client_id: Some("web-app".into()),
        name: "Acme Tracker".into(),
        kind: ClientKind::Confidential,
        auth_method: None,
        redirect_uris: vec![WEB_REDIRECT.into()],
        post_logout_redirect_uris: vec![],
        allowed_origins: vec![],
        grant_types: vec![],
        scopes: vec![],
        first_party,
        refresh_token_delivery: Default::default(),
        id_token_signed_response_alg: None,
        require_pkce: true,
        introspection: false,
        require_mfa: false,
    }
}

/// An HTTP client for the relying party's back channel: never follows redirects.
pub fn rp_http() -> Client {
    Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Follows the browser through the provider's pages (sign-in with `password`, consent
/// with `consent` when asked) until the provider redirects to `redirect_prefix`; returns
/// that final URL.
pub async fn follow(
    app: &TestApp,
    browser: &Client,
    start: &str,
    redirect_prefix: &str,
    consent: &str,
) -> Url {
    follow_at(&app.address, browser, start, redirect_prefix, consent).await
}

/// `follow` against the server at `base` (e.g. another process).
pub async fn follow_at(
    base: &str,
    browser: &Client,
    start: &str,
    redirect_prefix: &str,
    consent: &str,
) -> Url {
    let url_of = |path: &str| format!("{base}{path}");
    let mut next = start.to_owned();
    for _ in 0..10 {
        if next.starts_with(redirect_prefix) {
            return Url::parse(&next).expect("redirect URL");
        }
        let url = if next.starts_with('/') {
            url_of(&next)
        } else {
            next.clone()
        };
        let response = browser.get(&url).send().await.expect("GET");
        let status = response.status();
        if status.is_redirection() {
            next = response.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            continue;
        }
        assert_eq!(status, StatusCode::OK, "unexpected page at {url}");
        let path = Url::parse(&url).expect("url").path().to_owned();
        let html = response.text().await.expect("body");
        let form = LoginForm {
            tx: hidden_field(&html, "tx").expect("tx field"),
            csrf_token: hidden_field(&html, "csrf_token").expect("csrf field"),
        };
        let posted = match path.as_str() {
            "/login" => {
                flow::login_request(browser, base, &form, "alice", PASSWORD)
                    .send()
                    .await
            }
            "/consent" => {
                browser
                    .post(url_of("/consent"))
                    .form(&[
                        ("tx", form.tx.as_str()),
                        ("csrf_token", &form.csrf_token),
                        ("decision", consent),
                    ])
                    .send()
                    .await
            }
            other => panic!("unexpected page {other}"),
        }
        .expect("POST");
        assert_eq!(
            posted.status(),
            StatusCode::SEE_OTHER,
            "form post at {path}"
        );
        next = posted.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
    }
    panic!("too many redirects");
}

pub fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A fresh PKCE pair (RFC 7636).
pub fn pkce() -> Pkce {
    Pkce::generate().expect("verifier")
}

/// `/authorize?…` for `web-app` with sensible defaults, overridden by `extra`.
pub fn authorize_path(pkce: &Pkce, extra: &[(&str, &str)]) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("response_type".into(), "code".into()),
        ("client_id".into(), "web-app".into()),
        ("redirect_uri".into(), WEB_REDIRECT.into()),
        ("scope".into(), "openid profile email".into()),
        ("state".into(), "st-123".into()),
        ("nonce".into(), "n-456".into()),
        ("code_challenge".into(), pkce.challenge.clone()),
        ("code_challenge_method".into(), "S256".into()),
    ];
    for (k, v) in extra {
        params.retain(|(name, _)| name != k);
        if !v.is_empty() {
            params.push(((*k).into(), (*v).into()));
        }
    }
    let query = serde_urlencoded::to_string(&params).expect("query");
    format!("/authorize?{query}")
}

/// Signs in (and consents) through the pages; returns the code.
pub async fn code(app: &TestApp, browser: &Client, pkce: &Pkce, extra: &[(&str, &str)]) -> String {
    let back = follow(
        app,
        browser,
        &authorize_path(pkce, extra),
        WEB_REDIRECT,
        "allow",
    )
    .await;
    query(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
}

/// `code` for another client: `client_id` with its `redirect_uri`.
pub async fn code_for(app: &TestApp, client_id: &str, redirect_uri: &str, pkce: &Pkce) -> String {
    let path = authorize_path(
        pkce,
        &[("client_id", client_id), ("redirect_uri", redirect_uri)],
    );
    let back = follow(app, &app.client, &path, redirect_uri, "allow").await;
    query(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
}

/// Redeems `code` at `/token` (`client_secret_basic` with a secret, else as a public client).
pub async fn exchange(
    app: &TestApp,
    client_id: &str,
    secret: Option<&str>,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> reqwest::Response {
    flow::code_exchange(
        &rp_http(),
        &app.address,
        client_id,
        secret,
        code,
        redirect_uri,
        verifier,
    )
    .send()
    .await
    .expect("POST /token")
}

/// `exchange` for `web-app` (`client_secret_basic`) at its registered redirect URI.
pub async fn exchange_web(
    app: &TestApp,
    secret: &str,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    exchange(app, "web-app", Some(secret), code, WEB_REDIRECT, verifier).await
}

/// A public client of `kind` (SPA or native) at `redirect_uri`, allowed refresh tokens.
pub fn public_app(client_id: &str, kind: ClientKind, redirect_uri: &str) -> Registration {
    Registration {
        client_id: Some(client_id.into()),
        kind,
        redirect_uris: vec![redirect_uri.into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        ..web_app(true)
    }
}

/// Signs in through the pages for the public client `client_id` and redeems the code:
/// the token response.
pub async fn public_tokens(
    app: &TestApp,
    client_id: &str,
    redirect_uri: &str,
) -> serde_json::Value {
    let p = pkce();
    let c = code_for(app, client_id, redirect_uri, &p).await;
    exchange(app, client_id, None, &c, redirect_uri, &p.verifier)
        .await
        .json()
        .await
        .expect("JSON")
}

pub async fn assert_oauth_error(response: reqwest::Response, status: StatusCode, error: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.expect("JSON error");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert!(body.get("access_token").is_none());
}

pub const SCOPES: &str = "openid profile email offline_access";

/// A confidential client allowed refresh tokens and offline access.
pub fn refreshing_app() -> Registration {
    Registration {
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: SCOPES.split(' ').map(str::to_owned).collect(),
        ..web_app(true)
    }
}

/// Presents a refresh token at `/token` as `client_id`, with `extra` parameters.
pub async fn refresh_as(
    app: &TestApp,
    client_id: &str,
    secret: Option<&str>,
    token: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    flow::refresh_request(&rp_http(), &app.address, client_id, secret, token, extra)
        .send()
        .await
        .expect("POST /token")
}
