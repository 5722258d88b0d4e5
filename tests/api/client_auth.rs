//! Client authentication failures at every endpoint that authenticates clients
//! (`/token`, `/revoke`, `/introspect`), RFC 6749 §5.2: 401 with a `WWW-Authenticate: Basic`
//! challenge only when the client tried the `Authorization` header; otherwise 400
//! `invalid_client`, so libraries that send the secret in the body (openid-client's default)
//! show the `error_description` instead of a generic "challenge" error.

use portcullis::domain::client::AuthMethod;
use reqwest::StatusCode;
use serde_json::Value;

use crate::client_credentials::service;
use crate::helpers::{TestApp, rp_http, spawn_app};

const ENDPOINTS: [(&str, (&str, &str)); 3] = [
    ("/token", ("grant_type", "client_credentials")),
    ("/revoke", ("token", "some-token")),
    ("/introspect", ("token", "some-token")),
];

enum Auth<'a> {
    Body(&'a str, Option<&'a str>),
    Basic(&'a str, &'a str),
    Header(&'a str),
    Nothing,
}

async fn send(
    app: &TestApp,
    path: &str,
    param: (&str, &str),
    auth: &Auth<'_>,
) -> reqwest::Response {
    let mut form = vec![param];
    let mut request = rp_http().post(app.url(path));
    match auth {
        Auth::Body(id, secret) => {
            form.push(("client_id", id));
            if let Some(secret) = secret {
                form.push(("client_secret", secret));
            }
        }
        Auth::Basic(id, secret) => request = request.basic_auth(id, Some(secret)),
        Auth::Header(value) => request = request.header("authorization", *value),
        Auth::Nothing => {}
    }
    request.form(&form).send().await.expect("POST")
}

#[tokio::test]
async fn a_client_that_did_not_use_the_authorization_header_gets_400_without_a_challenge() {
    let app = spawn_app().await;
    let (_, basic) = app
        .register_client(service("billing", &["invoices:read"]))
        .await;
    let basic = basic.expect("secret");
    let mut post = service("poster", &["invoices:read"]);
    post.auth_method = Some(AuthMethod::ClientSecretPost);
    let (_, post_secret) = app.register_client(post).await;
    let post_secret = post_secret.expect("secret");
    let wrong = "x".repeat(43);

    let cases: Vec<(&str, Auth, &str)> = vec![
        (
            "secret in the body to a Basic client",
            Auth::Body("billing", Some(&basic)),
            "this client authenticates with client_secret_basic",
        ),
        (
            "wrong secret in the body",
            Auth::Body("poster", Some(&wrong)),
            "unknown client or wrong credentials",
        ),
        (
            "unknown client in the body",
            Auth::Body("nobody", Some(&post_secret)),
            "unknown client or wrong credentials",
        ),
        (
            "client_id without a secret for a Basic client",
            Auth::Body("billing", None),
            "this client authenticates with client_secret_basic",
        ),
        (
            "no credentials at all",
            Auth::Nothing,
            "client authentication is required",
        ),
    ];
    for (path, param) in ENDPOINTS {
        for (name, auth, description) in &cases {
            let response = send(&app, path, param, auth).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}: {name}");
            assert!(
                !response.headers().contains_key("www-authenticate"),
                "{path}: {name}: no challenge without an Authorization header"
            );
            assert_eq!(
                response.headers()["cache-control"],
                "no-store",
                "{path}: {name}"
            );
            let body: Value = response.json().await.expect("JSON error");
            assert_eq!(
                body,
                serde_json::json!({"error": "invalid_client", "error_description": description}),
                "{path}: {name}"
            );
        }
    }
}

#[tokio::test]
async fn a_client_that_tried_the_authorization_header_gets_401_with_a_basic_challenge() {
    let app = spawn_app().await;
    let (_, basic) = app
        .register_client(service("billing", &["invoices:read"]))
        .await;
    let basic = basic.expect("secret");
    let mut post = service("poster", &["invoices:read"]);
    post.auth_method = Some(AuthMethod::ClientSecretPost);
    let (_, post_secret) = app.register_client(post).await;
    let post_secret = post_secret.expect("secret");
    let wrong = "x".repeat(43);

    let cases: Vec<(&str, Auth, &str)> = vec![
        (
            "wrong secret in Basic",
            Auth::Basic("billing", &wrong),
            "unknown client or wrong credentials",
        ),
        (
            "unknown client in Basic",
            Auth::Basic("nobody", &basic),
            "unknown client or wrong credentials",
        ),
        (
            "Basic to a client_secret_post client",
            Auth::Basic("poster", &post_secret),
            "this client authenticates with client_secret_post",
        ),
        (
            "an Authorization header that is not Basic",
            Auth::Header("Bearer abc"),
            "the Authorization header is not valid HTTP Basic",
        ),
    ];
    for (path, param) in ENDPOINTS {
        for (name, auth, description) in &cases {
            let response = send(&app, path, param, auth).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{path}: {name}"
            );
            assert_eq!(
                response.headers()["www-authenticate"],
                "Basic realm=\"portcullis\"",
                "{path}: {name}"
            );
            assert_eq!(
                response.headers()["cache-control"],
                "no-store",
                "{path}: {name}"
            );
            let body: Value = response.json().await.expect("JSON error");
            assert_eq!(
                body,
                serde_json::json!({"error": "invalid_client", "error_description": description}),
                "{path}: {name}"
            );
        }
    }
}

#[tokio::test]
async fn a_client_secret_post_client_authenticates_with_its_secret_in_the_body() {
    let app = spawn_app().await;
    let mut post = service("poster", &["invoices:read"]);
    post.auth_method = Some(AuthMethod::ClientSecretPost);
    let (_, secret) = app.register_client(post).await;
    let secret = secret.expect("secret");
    for (path, param) in ENDPOINTS {
        let response = send(&app, path, param, &Auth::Body("poster", Some(&secret))).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}
