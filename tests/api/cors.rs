//! CORS on the endpoints browsers call: registered origins only, never `*`, and
//! credentials for the origins of cookie-delivery clients on every such endpoint (libraries
//! like oidc-client-ts send one credentials mode with all their requests).

use portcullis::clients::Registration;
use portcullis::domain::client::ClientKind;
use portcullis::domain::client::TokenDelivery;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{PASSWORD, TestApp, code_for, flow, pkce, rp_http, spawn_app, web_app};

const COOKIE_ORIGIN: &str = "http://127.0.0.1:5173";
const COOKIE_REDIRECT: &str = "http://127.0.0.1:5173/callback";
const PLAIN_ORIGIN: &str = "https://plain.example.com";
const UNREGISTERED: &str = "https://evil.example";

/// alice, `cookie-spa` (refresh tokens in a cookie) and `plain-spa` (in the body).
async fn cors_app() -> TestApp {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.register_client(Registration {
        client_id: Some("cookie-spa".into()),
        kind: ClientKind::Spa,
        redirect_uris: vec![COOKIE_REDIRECT.into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        refresh_token_delivery: TokenDelivery::Cookie,
        ..web_app(true)
    })
    .await;
    app.register_client(Registration {
        client_id: Some("plain-spa".into()),
        kind: ClientKind::Spa,
        redirect_uris: vec![format!("{PLAIN_ORIGIN}/callback")],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        ..web_app(true)
    })
    .await;
    app
}

/// An access token for alice, obtained by `cookie-spa` from its origin.
async fn access_token(app: &TestApp) -> String {
    let p = pkce();
    let code = code_for(app, "cookie-spa", COOKIE_REDIRECT, &p).await;
    let response = flow::code_exchange(
        &rp_http(),
        &app.address,
        "cookie-spa",
        None,
        &code,
        COOKIE_REDIRECT,
        &p.verifier,
    )
    .header("origin", COOKIE_ORIGIN)
    .send()
    .await
    .expect("POST /token");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// The actual (non-preflight) request each endpoint is called with, from `origin`.
async fn actual(app: &TestApp, path: &str, origin: &str, token: &str) -> reqwest::Response {
    let http = rp_http();
    let request = match path {
        "/userinfo" => http.get(app.url(path)).bearer_auth(token),
        "/userinfo (POST)" => http
            .post(app.url("/userinfo"))
            .form(&[("access_token", token)]),
        "/revoke" => http
            .post(app.url(path))
            .form(&[("client_id", "cookie-spa"), ("token", "not-a-token")]),
        "/token" => http
            .post(app.url(path))
            .form(&[("grant_type", "refresh_token"), ("client_id", "plain-spa")]),
        _ => http.get(app.url(path)),
    };
    request
        .header("origin", origin)
        .send()
        .await
        .expect("request")
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    let path = path.trim_end_matches(" (POST)");
    rp_http()
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("OPTIONS")
}

const ENDPOINTS: [&str; 7] = [
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/jwks.json",
    "/userinfo",
    "/userinfo (POST)",
    "/revoke",
    "/token",
];

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("an ASCII header"))
}

#[tokio::test]
async fn cookie_delivery_origins_may_send_credentials_to_every_cors_endpoint() {
    let app = cors_app().await;
    let token = access_token(&app).await;
    for path in ENDPOINTS {
        let response = actual(&app, path, COOKIE_ORIGIN, &token).await;
        if path != "/token" {
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
        let preflight = preflight(&app, path, COOKIE_ORIGIN).await;
        assert_eq!(preflight.status(), StatusCode::NO_CONTENT, "{path}");
        for (kind, r) in [("actual", &response), ("preflight", &preflight)] {
            assert_eq!(
                header(r, "access-control-allow-origin"),
                Some(COOKIE_ORIGIN),
                "{kind} {path}"
            );
            assert_eq!(
                header(r, "access-control-allow-credentials"),
                Some("true"),
                "{kind} {path}"
            );
            assert_eq!(header(r, "vary"), Some("Origin"), "{kind} {path}");
        }
        assert_eq!(
            header(&preflight, "access-control-allow-headers"),
            Some("Authorization, Content-Type"),
            "{path}"
        );
        assert_eq!(
            header(&preflight, "access-control-allow-methods"),
            Some("GET, POST"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn other_registered_origins_get_cors_without_credentials() {
    let app = cors_app().await;
    let token = access_token(&app).await;
    for path in ENDPOINTS {
        let response = actual(&app, path, PLAIN_ORIGIN, &token).await;
        let preflight = preflight(&app, path, PLAIN_ORIGIN).await;
        for (kind, r) in [("actual", &response), ("preflight", &preflight)] {
            assert_eq!(
                header(r, "access-control-allow-origin"),
                Some(PLAIN_ORIGIN),
                "{kind} {path}"
            );
            assert_eq!(
                header(r, "access-control-allow-credentials"),
                None,
                "{kind} {path}"
            );
            assert_eq!(header(r, "vary"), Some("Origin"), "{kind} {path}");
        }
        assert_eq!(
            header(&preflight, "access-control-allow-headers"),
            Some("Authorization, Content-Type"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn unregistered_origins_get_no_cors_headers() {
    let app = cors_app().await;
    let token = access_token(&app).await;
    for path in ENDPOINTS {
        let response = actual(&app, path, UNREGISTERED, &token).await;
        let preflight = preflight(&app, path, UNREGISTERED).await;
        for (kind, r) in [("actual", &response), ("preflight", &preflight)] {
            let cors: Vec<_> = r
                .headers()
                .keys()
                .filter(|name| name.as_str().starts_with("access-control-"))
                .collect();
            assert!(cors.is_empty(), "{kind} {path}: {cors:?}");
            assert_eq!(header(r, "vary"), Some("Origin"), "{kind} {path}");
        }
    }
}
