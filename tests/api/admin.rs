//! The admin API (`/admin/v1`): every resource and its error paths, authentication by
//! client_credentials tokens carrying `portcullis:admin`, RFC 9457 problem documents, and
//! an OpenAPI document that matches the routes (walked request by request).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use portcullis::audit::AuditSearch;
use portcullis::clients::Registration;
use portcullis::domain::client::ClientKind;
use portcullis::domain::signing_key::KeyState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client_credentials::{cc_request, service};
use crate::helpers::{
    PASSWORD, TestApp, WEB_REDIRECT, captured_logs, code, exchange, pkce, rp_http, spawn_app,
    web_app,
};

const ADMIN: &str = "ops";

pub struct Admin {
    pub app: TestApp,
    token: String,
    secret: String,
}

impl Admin {
    pub async fn new() -> Self {
        let app = spawn_app().await;
        let (_, secret) = app
            .register_client(Registration::admin("Ops".into(), Some(ADMIN.into())))
            .await;
        let secret = secret.expect("admin secret");
        let token = token_for(&app, ADMIN, &secret).await;
        Self { app, token, secret }
    }

    async fn refresh_token(&mut self) {
        self.token = token_for(&self.app, ADMIN, &self.secret).await;
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        rp_http()
            .request(method, self.app.url(path))
            .bearer_auth(&self.token)
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("admin request")
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let response = self.send(method.clone(), path, body).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON")
        }
    }

    pub async fn status(&self, method: Method, path: &str, body: Option<Value>) -> StatusCode {
        self.send(method, path, body).await.status()
    }
}

pub async fn token_for(app: &TestApp, client_id: &str, secret: &str) -> String {
    let response = cc_request(app, client_id, secret, &[]).await;
    assert_eq!(response.status(), StatusCode::OK, "client_credentials");
    let body: Value = response.json().await.expect("json");
    body["access_token"].as_str().expect("token").to_owned()
}

/// Asserts an RFC 9457 problem document with this status and code; returns it.
pub async fn problem(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "{code}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("request id")
        .to_owned();
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(body["type"], "about:blank", "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(
        body["title"],
        status.canonical_reason().expect("reason"),
        "{body}"
    );
    assert!(body["detail"].is_string(), "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    body
}

/// No key anywhere in `value` that would carry a secret or a hash.
pub fn assert_no_secrets(value: &Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let k = k.to_ascii_lowercase();
                assert!(
                    !(k.contains("secret")
                        || k.contains("hash")
                        || k.contains("password")
                        || k.contains("private")
                        || k.contains("encrypted")),
                    "{k} in a response"
                );
                assert_no_secrets(v);
            }
        }
        Value::Array(items) => items.iter().for_each(assert_no_secrets),
        _ => {}
    }
}

pub async fn audit_by(app: &TestApp, kind: &str) -> Vec<portcullis::audit::AuditRecord> {
    app.store
        .search_audit(&AuditSearch {
            kind: Some(kind.into()),
            actor_client_id: Some(ADMIN.into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit")
}

/// Signs `username` in with a fresh browser; returns it.
async fn signed_in(app: &TestApp, username: &str) -> reqwest::Client {
    let browser = app.new_browser();
    app.login_ok(&browser, username, PASSWORD).await;
    browser
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_admin_client_made_on_the_command_line_obtains_a_token_and_calls_the_api() {
    let app = spawn_app().await;
    let out = crate::helpers::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["clients", "create", "--admin", "--name", "Ops", "--json"])
            .env("PORTCULLIS__DATABASE__URL", &app.db.url)
            .env_remove("PORTCULLIS_ENV")
            .env_remove("RUST_LOG"),
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(created["kind"], "confidential");
    assert_eq!(created["grant_types"], json!(["client_credentials"]));
    assert_eq!(created["scopes"], "portcullis:admin");
    let client_id = created["id"].as_str().expect("id").to_owned();
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    let refused = crate::helpers::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "clients", "create", "--admin", "--name", "X", "--kind", "spa",
            ])
            .env("PORTCULLIS__DATABASE__URL", &app.db.url)
            .env_remove("PORTCULLIS_ENV"),
        "",
    );
    assert!(!refused.status.success(), "--admin decides the kind");

    let client = BasicClient::new(ClientId::new(client_id.clone()))
        .set_client_secret(ClientSecret::new(secret))
        .set_token_uri(TokenUrl::new(app.url("/token")).expect("url"));
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("portcullis:admin".into()))
        .request_async(&rp_http())
        .await
        .expect("admin token");
    let listed: Value = rp_http()
        .get(app.url("/admin/v1/clients"))
        .bearer_auth(token.access_token().secret())
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"][0]["client_id"], client_id.as_str());
    assert_no_secrets(&listed);
}

#[tokio::test]
async fn clients_are_registered_changed_rotated_and_deleted() {
    let admin = Admin::new().await;
    let app = &admin.app;

    let response = admin
        .send(
            Method::POST,
            "/admin/v1/clients",
            Some(json!({
                "client_id": "billing",
                "name": "Billing",
                "kind": "confidential",
                "grant_types": ["client_credentials"],
                "scopes": ["invoices:read"],
            })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["location"], "/admin/v1/clients/billing");
    let created: Value = response.json().await.expect("json");
    let secret = created["client_secret"]
        .as_str()
        .expect("secret once")
        .to_owned();
    assert_eq!(created["scopes"], json!(["invoices:read"]));
    assert!(created.get("secret_hash").is_none());
    assert_eq!(
        cc_request(app, "billing", &secret, &[]).await.status(),
        StatusCode::OK,
        "the secret works"
    );

    // Public client: no secret.
    let spa = admin
        .ok(
            Method::POST,
            "/admin/v1/clients",
            Some(json!({
                "client_id": "spa",
                "name": "SPA",
                "kind": "spa",
                "redirect_uris": ["https://app.example.com/cb"],
            })),
        )
        .await;
    assert!(spa["client_secret"].is_null());
    assert_eq!(spa["allowed_origins"], json!(["https://app.example.com"]));
    assert_eq!(spa["require_pkce"], true);
    assert_eq!(spa["refresh_token_delivery"], "body");
    assert_eq!(spa["id_token_signed_response_alg"], "RS256");

    let fetched = admin
        .ok(Method::GET, "/admin/v1/clients/billing", None)
        .await;
    assert_eq!(fetched["name"], "Billing");
    assert_no_secrets(&fetched);

    // Pagination by client_id.
    let first = admin
        .ok(Method::GET, "/admin/v1/clients?limit=1", None)
        .await;
    assert_eq!(first["items"][0]["client_id"], "billing");
    assert_eq!(first["next_after"], "billing");
    let rest = admin
        .ok(Method::GET, "/admin/v1/clients?limit=5&after=billing", None)
        .await;
    let ids: Vec<&str> = rest["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["client_id"].as_str())
        .collect();
    assert_eq!(ids, vec!["ops", "spa"]);
    assert!(rest["next_after"].is_null());

    // Refusals change nothing.
    let cases = [
        (
            json!({"client_id": "billing", "name": "Again", "kind": "confidential", "grant_types": ["client_credentials"], "scopes": ["x"]}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            json!({"name": "Bad", "kind": "spa", "grant_types": ["client_credentials"], "redirect_uris": ["https://a.example.com/cb"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"name": "Bad", "kind": "confidential", "redirect_uris": ["http://a.example.com/cb"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"name": "Bad", "kind": "confidential", "grant_types": ["client_credentials", "authorization_code"], "scopes": ["portcullis:admin"], "redirect_uris": ["https://a.example.com/cb"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"name": "Bad", "kind": "spa", "require_pkce": false, "redirect_uris": ["https://a.example.com/cb"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"name": "Bad", "kind": "robot"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"name": "Bad", "kind": "spa", "secret_hash": "x"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (body, status, code) in cases {
        problem(
            admin
                .send(Method::POST, "/admin/v1/clients", Some(body))
                .await,
            status,
            code,
        )
        .await;
    }

    // PKCE may be made optional for a confidential client, never for a public one.
    let billing = admin
        .ok(
            Method::PATCH,
            "/admin/v1/clients/billing",
            Some(json!({"require_pkce": false})),
        )
        .await;
    assert_eq!(billing["require_pkce"], false);
    problem(
        admin
            .send(
                Method::PATCH,
                "/admin/v1/clients/spa",
                Some(json!({"require_pkce": false})),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    )
    .await;

    // PATCH: the same rules; refused changes leave the client as it was.
    let patched = admin
        .ok(
            Method::PATCH,
            "/admin/v1/clients/billing",
            Some(json!({"name": "Billing v2", "scopes": ["invoices:read", "invoices:write"]})),
        )
        .await;
    assert_eq!(patched["name"], "Billing v2");
    assert_eq!(
        patched["scopes"],
        json!(["invoices:read", "invoices:write"])
    );
    assert_eq!(patched["kind"], "confidential");
    for (body, status, code) in [
        (
            json!({"grant_types": ["authorization_code"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"scopes": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"auth_method": "none"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"scopes": ["portcullis:admin"], "grant_types": ["client_credentials", "refresh_token"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"kind": "spa"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (json!({"name": 5}), StatusCode::BAD_REQUEST, "bad_request"),
    ] {
        problem(
            admin
                .send(Method::PATCH, "/admin/v1/clients/billing", Some(body))
                .await,
            status,
            code,
        )
        .await;
    }
    let unchanged = admin
        .ok(Method::GET, "/admin/v1/clients/billing", None)
        .await;
    assert_eq!(unchanged["name"], "Billing v2");
    assert_eq!(unchanged["grant_types"], json!(["client_credentials"]));
    problem(
        admin
            .send(
                Method::PATCH,
                "/admin/v1/clients/nobody",
                Some(json!({"name": "x"})),
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Rotation: the old secret stops at once.
    let rotated = admin
        .ok(
            Method::POST,
            "/admin/v1/clients/billing/rotate-secret",
            None,
        )
        .await;
    let new_secret = rotated["client_secret"].as_str().expect("new secret");
    assert_ne!(new_secret, secret);
    assert_eq!(
        cc_request(app, "billing", &secret, &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        cc_request(app, "billing", new_secret, &[]).await.status(),
        StatusCode::OK
    );
    problem(
        admin
            .send(Method::POST, "/admin/v1/clients/spa/rotate-secret", None)
            .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    // Delete.
    assert_eq!(
        admin
            .status(Method::DELETE, "/admin/v1/clients/spa", None)
            .await,
        StatusCode::NO_CONTENT
    );
    problem(
        admin.send(Method::GET, "/admin/v1/clients/spa", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        admin
            .send(Method::DELETE, "/admin/v1/clients/spa", None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        admin
            .send(Method::GET, "/admin/v1/clients/not%20an%20id", None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Every change names the acting client.
    for (kind, n) in [
        ("client.created", 2),
        ("client.updated", 2),
        ("client.secret_rotated", 1),
        ("client.deleted", 1),
    ] {
        let rows = audit_by(app, kind).await;
        assert_eq!(rows.len(), n, "{kind}");
        assert!(
            rows.iter()
                .all(|r| r.request_id.is_some() && r.ip.is_some())
        );
    }
    let updated = &audit_by(app, "client.updated").await[0];
    assert_eq!(updated.client_id.as_deref(), Some("billing"));
    assert_eq!(updated.details["fields"], json!(["name", "scopes"]));
    let pkce = &audit_by(app, "client.updated").await[1];
    assert_eq!(pkce.details["fields"], json!(["require_pkce"]));
    let logs = captured_logs();
    assert!(!logs.contains(&secret) && !logs.contains(new_secret) && !logs.contains(&admin.token));
}

#[tokio::test]
async fn users_are_created_changed_disabled_and_deleted() {
    let admin = Admin::new().await;
    let app = &admin.app;

    let response = admin
        .send(
            Method::POST,
            "/admin/v1/users",
            Some(json!({"username": "Alice", "email": "alice@example.com", "name": "Alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let alice: Value = response.json().await.expect("json");
    assert_no_secrets(&alice);
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["email_verified"], false);
    let id = alice["user_id"].as_str().expect("id").to_owned();
    assert_eq!(location, format!("/admin/v1/users/{id}"));
    let path = format!("/admin/v1/users/{id}");
    let browser = signed_in(app, "alice").await;

    for (body, status, code) in [
        (
            json!({"username": "ALICE", "password": PASSWORD}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            json!({"username": "bob", "password": "short"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"username": "b o b"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"username": "bob", "email": "not-an-address"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!({"username": "bob", "password_hash": "$argon2id$..."}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"email": "bob@example.com"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        problem(
            admin
                .send(Method::POST, "/admin/v1/users", Some(body))
                .await,
            status,
            code,
        )
        .await;
    }
    // A user without a password cannot sign in until one is set.
    let bob = admin
        .ok(
            Method::POST,
            "/admin/v1/users",
            Some(json!({"username": "bob"})),
        )
        .await;
    let bob_id = bob["user_id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.login(&app.new_browser(), "bob", PASSWORD)
            .await
            .status(),
        StatusCode::OK,
        "the form again: no password set"
    );

    let page = admin.ok(Method::GET, "/admin/v1/users?limit=1", None).await;
    assert_eq!(page["items"][0]["username"], "alice");
    assert_eq!(page["next_after"], "alice");
    let page = admin
        .ok(Method::GET, "/admin/v1/users?limit=1&after=alice", None)
        .await;
    assert_eq!(page["items"][0]["username"], "bob");
    assert!(page["next_after"].is_null());
    for bad in [
        "limit=0",
        "limit=501",
        "limit=x",
        "after=a%20b",
        "limit=1&limit=2",
        "nope=1",
    ] {
        problem(
            admin
                .send(Method::GET, &format!("/admin/v1/users?{bad}"), None)
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }

    // Profile: verification, a new address starts unverified, null clears.
    let verified = admin
        .ok(Method::PATCH, &path, Some(json!({"email_verified": true})))
        .await;
    assert_eq!(verified["email_verified"], true);
    let moved = admin
        .ok(
            Method::PATCH,
            &path,
            Some(json!({"email": "alice@new.example.com", "name": null})),
        )
        .await;
    assert_eq!(moved["email"], "alice@new.example.com");
    assert_eq!(moved["email_verified"], false);
    assert!(moved["name"].is_null());
    problem(
        admin
            .send(
                Method::PATCH,
                &format!("/admin/v1/users/{bob_id}"),
                Some(json!({"email_verified": true})),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    )
    .await;
    problem(
        admin
            .send(Method::PATCH, &path, Some(json!({"username": "eve"})))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;

    // A new password signs the user out everywhere.
    problem(
        admin
            .send(
                Method::PUT,
                &format!("{path}/password"),
                Some(json!({"password": "short"})),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    )
    .await;
    assert!(
        app.is_signed_in(&browser).await,
        "a refused change ends nothing"
    );
    assert_eq!(
        admin
            .status(
                Method::PUT,
                &format!("{path}/password"),
                Some(json!({"password": "a brand new passphrase"}))
            )
            .await,
        StatusCode::NO_CONTENT
    );
    assert!(!app.is_signed_in(&browser).await);
    assert_eq!(
        app.login(&app.new_browser(), "alice", PASSWORD)
            .await
            .status(),
        StatusCode::OK,
        "the old password fails"
    );
    let browser = app.new_browser();
    app.login_ok(&browser, "alice", "a brand new passphrase")
        .await;

    // Disable ends sessions and sign-in; enable restores sign-in.
    let disabled = admin
        .ok(Method::POST, &format!("{path}/disable"), None)
        .await;
    assert_eq!(disabled["disabled"], true);
    assert!(!app.is_signed_in(&browser).await);
    assert_eq!(
        admin
            .status(Method::POST, &format!("{path}/disable"), None)
            .await,
        StatusCode::OK,
        "idempotent"
    );
    let enabled = admin
        .ok(Method::POST, &format!("{path}/enable"), None)
        .await;
    assert_eq!(enabled["disabled"], false);
    let browser = signed_in_with(app, "alice", "a brand new passphrase").await;

    // Delete: sessions and consents go, the audit trail stays.
    let users_before = app.store.list_users(10).await.expect("users").len();
    assert_eq!(
        admin.status(Method::DELETE, &path, None).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.store.list_users(10).await.expect("users").len(),
        users_before - 1
    );
    assert!(!app.is_signed_in(&browser).await);
    problem(
        admin.send(Method::GET, &path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        admin.send(Method::DELETE, &path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        admin
            .send(Method::GET, "/admin/v1/users/not-a-uuid", None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        app.audit("user.created").await.len(),
        2,
        "the trail outlives the user"
    );
    let deleted = audit_by(app, "user.deleted").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].details["username"], "alice");
    for kind in [
        "user.created",
        "user.updated",
        "user.password_changed",
        "user.disabled",
        "user.enabled",
    ] {
        assert!(!audit_by(app, kind).await.is_empty(), "{kind}");
    }
    let logs = captured_logs();
    assert!(!logs.contains("a brand new passphrase") && !logs.contains(PASSWORD));
}

async fn signed_in_with(app: &TestApp, username: &str, password: &str) -> reqwest::Client {
    let browser = app.new_browser();
    app.login_ok(&browser, username, password).await;
    browser
}

#[tokio::test]
async fn deleting_a_user_removes_their_consents_and_ends_their_tokens_at_userinfo() {
    let admin = Admin::new().await;
    let app = &admin.app;
    let user = app.create_user("alice", PASSWORD).await;
    let (_, secret) = app.register_client(web_app(false)).await;
    let p = pkce();
    let c = code(app, &app.client, &p, &[]).await;
    let tokens: Value = exchange(
        app,
        "web-app",
        secret.as_deref(),
        &c,
        WEB_REDIRECT,
        &p.verifier,
    )
    .await
    .json()
    .await
    .expect("tokens");
    let access = tokens["access_token"].as_str().expect("token");
    let client_id = portcullis::domain::client::ClientId::parse("web-app").expect("id");
    assert!(
        app.store
            .find_consent(user.id, &client_id)
            .await
            .expect("consent")
            .is_some()
    );

    assert_eq!(
        admin
            .status(
                Method::DELETE,
                &format!("/admin/v1/users/{}", user.id),
                None
            )
            .await,
        StatusCode::NO_CONTENT
    );
    assert!(
        app.store
            .find_consent(user.id, &client_id)
            .await
            .expect("consent")
            .is_none()
    );
    let userinfo = rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_one_or_all() {
    let admin = Admin::new().await;
    let app = &admin.app;
    let alice = app.create_user("alice", PASSWORD).await;
    let laptop = signed_in(app, "alice").await;
    app.clock.advance(time::Duration::seconds(5));
    let phone = signed_in(app, "alice").await;
    let path = format!("/admin/v1/users/{}/sessions", alice.id);

    let sessions = admin.ok(Method::GET, &path, None).await;
    let sessions = sessions.as_array().expect("array").clone();
    assert_eq!(sessions.len(), 2);
    assert_no_secrets(&Value::Array(sessions.clone()));
    assert!(sessions[0]["user_agent"].is_string() && sessions[0]["amr"] == json!(["pwd"]));
    // The most recent first: the phone.
    let phone_session = sessions[0]["session_id"].as_str().expect("id").to_owned();
    assert_eq!(
        admin
            .status(Method::DELETE, &format!("{path}/{phone_session}"), None)
            .await,
        StatusCode::NO_CONTENT
    );
    assert!(!app.is_signed_in(&phone).await);
    assert!(app.is_signed_in(&laptop).await);
    problem(
        admin
            .send(Method::DELETE, &format!("{path}/{phone_session}"), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        admin
            .send(
                Method::DELETE,
                &format!("{path}/{}", uuid::Uuid::new_v4()),
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Another user's session id does not reach through this user.
    let bob = app.create_user("bob", PASSWORD).await;
    problem(
        admin
            .send(
                Method::DELETE,
                &format!(
                    "/admin/v1/users/{}/sessions/{}",
                    bob.id,
                    sessions[1]["session_id"].as_str().expect("id")
                ),
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(app.is_signed_in(&laptop).await);

    let all = admin.ok(Method::DELETE, &path, None).await;
    assert_eq!(all["revoked_sessions"], 1);
    assert!(!app.is_signed_in(&laptop).await);
    assert_eq!(admin.ok(Method::GET, &path, None).await, json!([]));
    problem(
        admin
            .send(
                Method::GET,
                &format!("/admin/v1/users/{}/sessions", uuid::Uuid::new_v4()),
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let revoked = audit_by(app, "session.revoked").await;
    assert_eq!(revoked.len(), 2);
    assert!(revoked.iter().all(|r| r.user_id == Some(alice.id)));
}

#[tokio::test]
async fn keys_are_listed_without_private_material_rotated_and_retired() {
    let mut admin = Admin::new().await;
    let listed = admin.ok(Method::GET, "/admin/v1/keys", None).await;
    let keys = listed.as_array().expect("array");
    assert_eq!(keys.len(), 2);
    for key in keys {
        let fields: BTreeSet<&str> = key
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            BTreeSet::from([
                "kid",
                "alg",
                "state",
                "created_at",
                "activated_at",
                "retired_at",
                "remove_after"
            ])
        );
    }
    let old_current = keys
        .iter()
        .find(|k| k["state"] == "current")
        .and_then(|k| k["kid"].as_str())
        .expect("current")
        .to_owned();

    let rotations = admin.ok(Method::POST, "/admin/v1/keys/rotate", None).await;
    let rotation = &rotations[0];
    assert_eq!(rotation["alg"], "RS256");
    assert_eq!(rotation["outcome"], "rotated");
    assert_eq!(rotation["retired"], old_current.as_str());
    let states: BTreeMap<String, String> = admin
        .ok(Method::GET, "/admin/v1/keys", None)
        .await
        .as_array()
        .expect("array")
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap_or_default().to_owned(),
                k["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(states[&old_current], "retired");
    assert_eq!(states.values().filter(|s| *s == "current").count(), 1);
    let rotated = audit_by(&admin.app, "key.rotated").await;
    assert_eq!(rotated.len(), 1);

    // Our token was signed by the key now retired: it still works until the key is
    // retired at once; then it fails verification.
    let retired = admin
        .ok(
            Method::POST,
            &format!("/admin/v1/keys/{old_current}/retire"),
            None,
        )
        .await;
    assert_eq!(retired["kid"], old_current.as_str());
    assert_eq!(retired["previous_state"], "retired");
    problem(
        admin.send(Method::GET, "/admin/v1/keys", None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    admin.refresh_token().await;
    problem(
        admin
            .send(Method::POST, "/admin/v1/keys/no-such-kid/retire", None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let retired_rows = audit_by(&admin.app, "key.retired").await;
    assert_eq!(retired_rows.len(), 1);
    assert_eq!(retired_rows[0].details["kid"], old_current.as_str());
}

#[tokio::test]
async fn audit_events_are_filtered_and_paged() {
    let mut admin = Admin::new().await;
    let alice = admin.app.create_user("alice", PASSWORD).await;
    admin
        .app
        .login(&admin.app.new_browser(), "alice", "wrong password")
        .await;
    admin.app.clock.advance(time::Duration::hours(1));
    admin.refresh_token().await;
    let app = &admin.app;
    let t1 = portcullis::clock::Clock::now(&app.clock);
    app.login(&app.new_browser(), "alice", "wrong password")
        .await;
    admin
        .ok(
            Method::POST,
            &format!("/admin/v1/users/{}/disable", alice.id),
            None,
        )
        .await;

    let q = |query: &str| {
        let path = format!("/admin/v1/audit-events?{query}");
        let admin = &admin;
        async move { admin.ok(Method::GET, &path, None).await }
    };
    let failures = q("kind=login.failure").await;
    assert_eq!(failures["items"].as_array().map(Vec::len), Some(2));
    let by_alice = q(&format!("user_id={}", alice.id)).await;
    let kinds: Vec<&str> = by_alice["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "user.disabled",
            "login.failure",
            "login.failure",
            "user.created"
        ]
    );
    let since = t1
        .format(&time::format_description::well_known::Rfc3339)
        .expect("rfc3339");
    let recent = q(&format!("kind=login.failure&since={}", urlencode(&since))).await;
    assert_eq!(recent["items"].as_array().map(Vec::len), Some(1));
    let older = q(&format!("kind=login.failure&until={}", urlencode(&since))).await;
    assert_eq!(older["items"].as_array().map(Vec::len), Some(1));
    let acted = q(&format!("actor_client_id={ADMIN}")).await;
    assert_eq!(acted["items"][0]["kind"], "user.disabled");
    assert_eq!(acted["items"][0]["actor_client_id"], ADMIN);
    let issued = q(&format!("client_id={ADMIN}&kind=token.issued")).await;
    assert_eq!(issued["items"].as_array().map(Vec::len), Some(2));

    // Paging: newest first, cursor `before`.
    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let query = match cursor {
            Some(c) => format!("limit=2&before={c}"),
            None => "limit=2".to_owned(),
        };
        let page = q(&query).await;
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|e| e["id"].as_i64()),
        );
        match page["next_before"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let all = q("limit=500").await;
    let all: Vec<i64> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert_eq!(seen, all);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first");

    for bad in [
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "limit=0",
        "limit=1000",
        "user_id=nope",
        "kind=a&kind=b",
        "sort=asc",
    ] {
        problem(
            admin
                .send(Method::GET, &format!("/admin/v1/audit-events?{bad}"), None)
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)])
        .expect("encode")
        .trim_start_matches("x=")
        .to_owned()
}

/// Everything an unauthorised request could have changed.
async fn snapshot(app: &TestApp) -> Value {
    let now = portcullis::clock::Clock::now(&app.clock);
    let clients: Vec<Value> = app
        .store
        .list_clients(100)
        .await
        .expect("clients")
        .into_iter()
        .map(|c| {
            json!([
                c.id.to_string(),
                c.name,
                c.scopes.to_string(),
                c.grant_types,
                c.secret_hash.map(|h| h.as_bytes().to_vec())
            ])
        })
        .collect();
    let mut users = Vec::new();
    for u in app.store.list_users(100).await.expect("users") {
        let sessions = app
            .store
            .list_sessions(u.id, now)
            .await
            .expect("sessions")
            .len();
        let hash = app
            .store
            .find_user(&u.username)
            .await
            .expect("user")
            .and_then(|(_, h)| h)
            .map(|h| h.0);
        users.push(json!([
            u.id.to_string(),
            u.email,
            u.name,
            u.disabled,
            sessions,
            hash
        ]));
    }
    let keys: Vec<Value> = app
        .store
        .list_signing_keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|k| json!([k.kid, k.state]))
        .collect();
    let audit: Vec<Value> = app
        .store
        .search_audit(&AuditSearch {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_iter()
        // Refusals are recorded as `admin.denied`, and checked where they happen.
        .filter(|r| r.kind != "token.issued" && r.kind != "admin.denied")
        .map(|r| json!([r.id, r.kind]))
        .collect();
    json!({"clients": clients, "users": users, "keys": keys, "audit": audit})
}

/// A request for every operation of the document, with real ids and a valid body.
fn operation_requests(
    doc: &Value,
    ids: &BTreeMap<&str, String>,
) -> Vec<(Method, String, Option<Value>)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let m = match method.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "put" => Method::PUT,
                "patch" => Method::PATCH,
                "delete" => Method::DELETE,
                other => panic!("unexpected method {other} in {path}"),
            };
            let mut concrete = path.clone();
            for (name, value) in ids {
                concrete = concrete.replace(&format!("{{{name}}}"), value);
            }
            assert!(!concrete.contains('{'), "no id for {path}");
            let body = op["requestBody"]["content"]["application/json"]["schema"]
                .get("$ref")
                .and_then(Value::as_str)
                .map(|r| example_of(doc, r));
            out.push((m, concrete, body));
        }
    }
    out
}

/// A body from a schema's documented examples (and empty values for required fields
/// without one).
fn example_of(doc: &Value, reference: &str) -> Value {
    let schema = resolve(doc, reference).expect("schema");
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut body = serde_json::Map::new();
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        if let Some(example) = property.get("example") {
            body.insert(name.clone(), example.clone());
        } else if required.contains(name.as_str()) {
            body.insert(name.clone(), json!(""));
        }
    }
    Value::Object(body)
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref"
                    && let Some(r) = v.as_str()
                {
                    out.push(r);
                }
                refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_matches_the_mounted_routes() {
    let admin = Admin::new().await;
    let app = &admin.app;
    // The document needs no token.
    let response = rp_http()
        .get(app.url("/admin/v1/openapi.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.expect("json");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["servers"][0]["url"], app.settings.issuer.as_str());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["client_credentials"]["flows"]["clientCredentials"]["tokenUrl"],
        app.url("/token")
    );
    let mut all_refs = Vec::new();
    refs(&doc, &mut all_refs);
    assert!(!all_refs.is_empty());
    for r in &all_refs {
        assert!(resolve(&doc, r).is_some(), "{r} does not resolve");
    }
    let ops: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .expect("item")
                .keys()
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = portcullis::admin::routes().iter().cloned().collect();
    assert_eq!(ops, served);
    assert_eq!(ops.len(), 27);

    // Fixtures for every path parameter.
    let user = app.create_user("walker", PASSWORD).await;
    signed_in(app, "walker").await;
    signed_in(app, "walker").await;
    let session = app
        .store
        .list_sessions(user.id, portcullis::clock::Clock::now(&app.clock))
        .await
        .expect("sessions")[0]
        .id;
    app.register_client(web_app(false)).await;
    let next_kid = app
        .store
        .list_signing_keys()
        .await
        .expect("keys")
        .into_iter()
        .find(|k| k.state == KeyState::Next)
        .expect("next key")
        .kid;
    let (factor, _) = app
        .factors()
        .enroll_totp_for(
            &user,
            None,
            time::OffsetDateTime::now_utc(),
            &portcullis::audit::Actor::cli(),
        )
        .await
        .expect("factor");
    let ids = BTreeMap::from([
        ("user_id", user.id.to_string()),
        ("session_id", session.to_string()),
        ("client_id", "web-app".to_owned()),
        ("kid", next_kid),
        ("factor_id", factor.factor_id.to_string()),
    ]);
    let mut requests = operation_requests(&doc, &ids);
    // Reads first, then the session revocations, then changes, then deletions.
    let rank = |(m, p, _): &(Method, String, Option<Value>)| match *m {
        Method::GET => (0, 0),
        Method::DELETE if p.contains("/sessions") => (1, usize::MAX - p.len()),
        Method::DELETE => (3, usize::MAX - p.len()),
        _ => (2, 0),
    };
    requests.sort_by_key(rank);
    for (method, path, body) in requests {
        let template = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .find(|(t, _)| {
                let t: Vec<&str> = t.split('/').collect();
                let p: Vec<&str> = path.split('/').collect();
                t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
            })
            .map(|(t, item)| (t.clone(), item.clone()))
            .expect("template");
        let op = &template.1[method.as_str().to_ascii_lowercase()];
        let response = admin.send(method.clone(), &path, body.clone()).await;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("body");
        let documented = &op["responses"][status.as_str()];
        assert!(
            !documented.is_null(),
            "{method} {path} answered {status}, not documented: {text}"
        );
        assert!(
            status.is_success(),
            "{method} {path} with real ids and {body:?}: {status} {text}"
        );
        // The body has the documented schema's required fields.
        if let Some(schema) = documented["content"]["application/json"]["schema"].as_object() {
            assert!(
                content_type.starts_with("application/json"),
                "{method} {path}"
            );
            let value: Value = serde_json::from_str(&text).expect("JSON body");
            if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
                let s = resolve(&doc, r).expect("schema");
                let s = s["allOf"]
                    .get(0)
                    .and_then(|x| x.get("$ref"))
                    .and_then(Value::as_str)
                    .and_then(|r| resolve(&doc, r))
                    .unwrap_or(s);
                for field in s["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    assert!(
                        value.get(field).is_some(),
                        "{method} {path}: {field} missing in {text}"
                    );
                }
            }
            assert_no_secrets_except_new(&value, &path);
        }
    }

    // Conversely: no undocumented method answers on a documented path, and paths the
    // document does not have are unknown routes.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete = ids.iter().fold(path.clone(), |p, (name, value)| {
            p.replace(&format!("{{{name}}}"), value)
        });
        let documented: BTreeSet<String> = item
            .as_object()
            .expect("item")
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if documented.contains(method.as_str()) {
                continue;
            }
            let response = admin.send(method.clone(), &concrete, None).await;
            let allow: BTreeSet<String> = response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(", ")
                .map(str::to_owned)
                .collect();
            problem(
                response,
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            )
            .await;
            assert_eq!(allow, documented, "{method} {path}");
        }
    }
    for unknown in [
        "/admin/v1",
        "/admin/v1/",
        "/admin/v1/nothing",
        "/admin/v1/clients/web-app/secret",
        "/admin/v1/users/x/sessions/y/z",
        "/admin/v1/clients/",
    ] {
        problem(
            admin.send(Method::GET, unknown, None).await,
            StatusCode::NOT_FOUND,
            "unknown_route",
        )
        .await;
    }
}

fn assert_no_secrets_except_new(value: &Value, path: &str) {
    if path.ends_with("/rotate-secret")
        || path == "/admin/v1/clients"
        || path.ends_with("/factors/totp")
    {
        // The places a new secret is shown; hashes never.
        if let Some(map) = value.as_object() {
            let mut rest = map.clone();
            rest.remove("client_secret");
            rest.remove("secret");
            assert_no_secrets(&Value::Object(rest));
        }
    } else if path != "/admin/v1/openapi.json" {
        assert_no_secrets(value);
    }
}

#[tokio::test]
async fn requests_without_a_valid_admin_token_are_refused_and_change_nothing() {
    let admin = Admin::new().await;
    let app = &admin.app;
    let user = app.create_user("alice", PASSWORD).await;
    let browser = signed_in(app, "alice").await;

    // Tokens that must not work.
    let (_, web_secret) = app.register_client(web_app(false)).await;
    let p = pkce();
    let c = code(app, &app.client, &p, &[]).await;
    let user_tokens: Value = exchange(
        app,
        "web-app",
        web_secret.as_deref(),
        &c,
        WEB_REDIRECT,
        &p.verifier,
    )
    .await
    .json()
    .await
    .expect("tokens");
    let user_token = user_tokens["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (_, billing) = app.register_client(service("billing", &["api"])).await;
    let service_token = token_for(app, "billing", &billing.expect("secret")).await;
    let (_, doomed) = app
        .register_client(Registration::admin("Doomed".into(), Some("doomed".into())))
        .await;
    let doomed_token = token_for(app, "doomed", &doomed.expect("secret")).await;
    let (_, demoted) = app
        .register_client(Registration::admin(
            "Demoted".into(),
            Some("demoted".into()),
        ))
        .await;
    let demoted_token = token_for(app, "demoted", &demoted.expect("secret")).await;
    assert_eq!(
        rp_http()
            .get(app.url("/admin/v1/keys"))
            .bearer_auth(&doomed_token)
            .send()
            .await
            .expect("GET")
            .status(),
        StatusCode::OK,
        "works before its client goes"
    );
    assert_eq!(
        admin
            .status(Method::DELETE, "/admin/v1/clients/doomed", None)
            .await,
        StatusCode::NO_CONTENT
    );
    admin
        .ok(
            Method::PATCH,
            "/admin/v1/clients/demoted",
            Some(json!({"scopes": ["api"]})),
        )
        .await;
    let expired_token = admin.token.clone();
    // One signature character changed (not the last, whose low bits are padding).
    let mut tampered = admin.token.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");

    let before = snapshot(app).await;
    let doc = admin.ok(Method::GET, "/admin/v1/openapi.json", None).await;
    let ids = BTreeMap::from([
        ("user_id", user.id.to_string()),
        ("session_id", uuid::Uuid::new_v4().to_string()),
        ("client_id", "web-app".to_owned()),
        ("kid", "some-kid".to_owned()),
        ("factor_id", uuid::Uuid::new_v4().to_string()),
    ]);
    let requests: Vec<_> = operation_requests(&doc, &ids)
        .into_iter()
        .filter(|(_, p, _)| p != "/admin/v1/openapi.json")
        .collect();
    assert_eq!(requests.len(), 26);

    let check =
        |label: &'static str, token: Option<String>, status: StatusCode, code: &'static str| {
            let requests = requests.clone();
            let app = &admin.app;
            async move {
                for (method, path, body) in requests {
                    let mut request = rp_http().request(method.clone(), app.url(&path));
                    if let Some(t) = &token {
                        request = request.bearer_auth(t);
                    }
                    if let Some(b) = body {
                        request = request.json(&b);
                    }
                    let response = request.send().await.expect("request");
                    let challenge = response
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    assert!(
                        challenge.starts_with("Bearer realm=\"portcullis\""),
                        "{label}: {method} {path}: {challenge}"
                    );
                    match code {
                        "missing_token" => {
                            assert_eq!(challenge, "Bearer realm=\"portcullis\"", "{label}")
                        }
                        "invalid_token" => {
                            assert!(challenge.contains("error=\"invalid_token\""), "{label}")
                        }
                        _ => assert!(
                            challenge.contains("error=\"insufficient_scope\"")
                                && challenge.contains("scope=\"portcullis:admin\""),
                            "{label}"
                        ),
                    }
                    problem(response, status, code).await;
                }
            }
        };
    check("no token", None, StatusCode::UNAUTHORIZED, "missing_token").await;
    check(
        "garbage",
        Some("not-a-jwt".into()),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    check(
        "tampered",
        Some(tampered),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    check(
        "a user's token",
        Some(user_token),
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    check(
        "a service's token",
        Some(service_token),
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    check(
        "a deleted admin client",
        Some(doomed_token),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    check(
        "a demoted admin client",
        Some(demoted_token),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // Basic credentials are not a bearer token.
    let basic = rp_http()
        .get(app.url("/admin/v1/keys"))
        .basic_auth(ADMIN, Some(&admin.secret))
        .send()
        .await
        .expect("GET");
    problem(basic, StatusCode::UNAUTHORIZED, "missing_token").await;
    // The scheme is case-insensitive (RFC 9110 §11.1); a header that is not text is a bad
    // request, not a missing token.
    let lower = rp_http()
        .get(app.url("/admin/v1/keys"))
        .header("authorization", format!("bearer {}", admin.token))
        .send()
        .await
        .expect("GET");
    assert_eq!(lower.status(), StatusCode::OK);
    let garbled = rp_http()
        .get(app.url("/admin/v1/keys"))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xc3\xa9").expect("value"),
        )
        .send()
        .await
        .expect("GET");
    problem(garbled, StatusCode::BAD_REQUEST, "bad_request").await;
    // Past the access token lifetime (10 minutes) and the clock skew allowance.
    app.clock.advance(time::Duration::minutes(12));
    check(
        "expired",
        Some(expired_token),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;

    assert_eq!(snapshot(app).await, before, "nothing changed");
    assert!(app.is_signed_in(&browser).await, "alice is still signed in");
    // A valid token refused is an authorisation decision about a known client: audited
    // with the client (and the user, for a user's token), the reason and the route — once
    // per caller per minute, since any valid token will do to be refused. Requests
    // without a valid token are not attributable and leave no row.
    let denied = app
        .store
        .search_audit(&AuditSearch {
            kind: Some("admin.denied".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit");
    let mut tally: BTreeMap<(String, String), usize> = BTreeMap::new();
    for row in &denied {
        assert_eq!(row.outcome, "failure");
        assert_eq!(
            row.actor_client_id, None,
            "a refused client is not an actor"
        );
        assert!(
            row.details["route"]
                .as_str()
                .is_some_and(|p| p.starts_with("/admin/v1/")),
            "{}",
            row.details
        );
        assert!(row.details["method"].is_string());
        let user_token = row.client_id.as_deref() == Some("web-app");
        assert_eq!(
            row.details["token"],
            if user_token { "user" } else { "client" }
        );
        assert_eq!(row.user_id, user_token.then_some(user.id));
        *tally
            .entry((
                row.client_id.clone().unwrap_or_default(),
                row.details["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ))
            .or_default() += 1;
    }
    let expected: BTreeMap<(String, String), usize> = [
        ("web-app", "insufficient_scope"),
        ("billing", "insufficient_scope"),
        ("doomed", "client_revoked"),
        ("demoted", "client_revoked"),
    ]
    .into_iter()
    .map(|(c, r)| ((c.to_owned(), r.to_owned()), 1))
    .collect();
    assert_eq!(tally, expected);
    // Unknown routes and bad bodies are not reachable without a token either.
    problem(
        rp_http()
            .get(app.url("/admin/v1/nothing"))
            .send()
            .await
            .expect("GET"),
        StatusCode::UNAUTHORIZED,
        "missing_token",
    )
    .await;
}

#[tokio::test]
async fn bodies_that_are_not_the_documented_json_are_problems() {
    let admin = Admin::new().await;
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            admin
                .request(Method::POST, "/admin/v1/clients")
                .header("content-type", "application/json")
                .body("{\"name\": "),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            admin
                .request(Method::POST, "/admin/v1/clients")
                .header("content-type", "text/plain")
                .body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            admin
                .request(Method::POST, "/admin/v1/clients")
                .form(&[("name", "x"), ("kind", "spa")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            admin.request(Method::POST, "/admin/v1/users").json(&json!({
                "username": "x",
                "name": "n".repeat(70 * 1024),
            })),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            admin
                .request(Method::POST, "/admin/v1/users")
                .json(&json!([1, 2])),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (request, status, code) in cases {
        problem(request.send().await.expect("request"), status, code).await;
    }
    assert!(
        admin
            .app
            .store
            .list_users(10)
            .await
            .expect("users")
            .is_empty()
    );
    assert_eq!(
        admin
            .app
            .store
            .list_clients(10)
            .await
            .expect("clients")
            .len(),
        1,
        "only the admin client"
    );
    // An admin client may be a client of the API but never of a user flow.
    let mut registration = Registration::admin("Two".into(), Some("two".into()));
    registration.kind = ClientKind::Spa;
    assert!(
        portcullis::clients::register(
            admin.app.store.as_ref(),
            registration,
            time::OffsetDateTime::now_utc(),
            &portcullis::audit::Actor::cli()
        )
        .await
        .is_err()
    );
}

fn cli(app: &TestApp, args: &[&str]) -> Value {
    let out = crate::helpers::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .arg("--json")
            .env("PORTCULLIS__DATABASE__URL", &app.db.url)
            .env_remove("PORTCULLIS_ENV")
            .env_remove("RUST_LOG"),
        "",
    );
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[tokio::test]
async fn the_command_line_manages_sessions_and_users_with_the_same_functions() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let laptop = signed_in(&app, "alice").await;
    app.clock.advance(time::Duration::seconds(5));
    let phone = signed_in(&app, "alice").await;

    let listed = cli(&app, &["sessions", "list", "--user", "alice"]);
    let listed = listed.as_array().expect("sessions");
    assert_eq!(listed.len(), 2);
    assert_no_secrets(&Value::Array(listed.clone()));
    let phone_session = listed[0]["id"].as_str().expect("id").to_owned();
    let revoked = cli(
        &app,
        &[
            "sessions",
            "revoke",
            "--user",
            "alice",
            "--session",
            &phone_session,
        ],
    );
    assert_eq!(revoked["revoked_sessions"], 1);
    assert!(!app.is_signed_in(&phone).await && app.is_signed_in(&laptop).await);

    let updated = cli(
        &app,
        &[
            "users",
            "update",
            "--username",
            "alice",
            "--email",
            "a@new.example.com",
            "--name",
            "Alice A",
        ],
    );
    assert_eq!(updated["email"], "a@new.example.com");
    assert_eq!(updated["email_verified"], false);
    assert_eq!(updated["name"], "Alice A");
    let verified = cli(
        &app,
        &[
            "users",
            "update",
            "--username",
            "alice",
            "--email-verified",
            "true",
            "--name",
            "",
        ],
    );
    assert_eq!(verified["email_verified"], true);
    assert!(verified["name"].is_null());

    let deleted = cli(&app, &["users", "delete", "--username", "alice"]);
    assert_eq!(deleted["deleted"], true);
    assert!(!app.is_signed_in(&laptop).await);
    let rows = cli(&app, &["audit", "list", "--kind", "user.deleted"]);
    assert_eq!(rows[0]["details"]["username"], "alice");
    assert_eq!(rows[0]["request_id"], "cli");
    assert!(rows[0]["actor_client_id"].is_null());
    let revocations = cli(
        &app,
        &["audit", "list", "--kind", "session.revoked", "--limit", "5"],
    );
    assert_eq!(revocations[0]["details"]["scope"], "one");
}

#[tokio::test]
async fn the_command_line_updates_clients_under_the_registration_rules() {
    let app = spawn_app().await;
    app.register_client(web_app(false)).await;
    let updated = cli(
        &app,
        &[
            "clients",
            "update",
            "--client-id",
            "web-app",
            "--name",
            "Tracker 2",
            "--scope",
            "openid",
            "--scope",
            "email",
        ],
    );
    assert_eq!(updated["name"], "Tracker 2");
    assert_eq!(updated["scopes"], "email openid");
    assert_eq!(updated["redirect_uris"], json!([WEB_REDIRECT]));
    let refused = crate::helpers::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "clients",
                "update",
                "--client-id",
                "web-app",
                "--redirect-uri",
                "http://evil.example.com/cb",
            ])
            .env("PORTCULLIS__DATABASE__URL", &app.db.url)
            .env_remove("PORTCULLIS_ENV"),
        "",
    );
    assert!(!refused.status.success());
    let client_id = portcullis::domain::client::ClientId::parse("web-app").expect("id");
    let stored = app
        .store
        .find_client(&client_id)
        .await
        .expect("find")
        .expect("client");
    assert_eq!(stored.redirect_uris, vec![WEB_REDIRECT.to_owned()]);
    assert_eq!(app.audit("client.updated").await.len(), 1);
}

#[tokio::test]
async fn the_disabled_state_and_introspection_permission_round_trip() {
    let admin = Admin::new().await;
    let app = &admin.app;
    // The admin API: create, read and change both.
    let created = admin
        .ok(
            Method::POST,
            "/admin/v1/clients",
            Some(json!({
                "client_id": "rs", "name": "Resource server", "kind": "confidential",
                "grant_types": ["client_credentials"], "scopes": ["invoices:read"],
                "introspection": true,
            })),
        )
        .await;
    assert_eq!(created["introspection"], true);
    assert_eq!(created["disabled"], false);
    let patched = admin
        .ok(
            Method::PATCH,
            "/admin/v1/clients/rs",
            Some(json!({"disabled": true, "introspection": false})),
        )
        .await;
    assert_eq!(patched["disabled"], true);
    assert_eq!(patched["introspection"], false);
    let fetched = admin.ok(Method::GET, "/admin/v1/clients/rs", None).await;
    assert_eq!(fetched["disabled"], true);
    assert_eq!(fetched["introspection"], false);
    // Disabling again changes nothing and is not audited again.
    admin
        .ok(
            Method::PATCH,
            "/admin/v1/clients/rs",
            Some(json!({"disabled": true})),
        )
        .await;
    let enabled = admin
        .ok(
            Method::PATCH,
            "/admin/v1/clients/rs",
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(enabled["disabled"], false);
    assert_eq!(audit_by(app, "client.disabled").await.len(), 1);
    assert_eq!(audit_by(app, "client.enabled").await.len(), 1);
    let updated = audit_by(app, "client.updated").await;
    assert_eq!(
        updated.len(),
        1,
        "only the PATCH that changed registration fields"
    );
    assert_eq!(updated[0].details["fields"], json!(["introspection"]));
    assert_eq!(updated[0].details["introspection"], false);
    // Only a confidential client may introspect (RFC 7662 §2.1).
    problem(
        admin
            .send(
                Method::POST,
                "/admin/v1/clients",
                Some(json!({
                    "name": "Bad", "kind": "spa", "introspection": true,
                    "redirect_uris": ["https://a.example.com/cb"],
                })),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
    )
    .await;

    // The command line: the same fields.
    let created = cli(
        app,
        &[
            "clients",
            "create",
            "--name",
            "RS 2",
            "--kind",
            "confidential",
            "--client-id",
            "rs2",
            "--grant-type",
            "client_credentials",
            "--scope",
            "invoices:read",
            "--introspection",
        ],
    );
    assert_eq!(created["introspection"], true);
    assert_eq!(created["disabled"], false);
    let updated = cli(
        app,
        &[
            "clients",
            "update",
            "--client-id",
            "rs2",
            "--introspection",
            "false",
        ],
    );
    assert_eq!(updated["introspection"], false);
    let disabled = cli(app, &["clients", "disable", "--client-id", "rs2"]);
    assert_eq!(
        disabled,
        json!({"client_id": "rs2", "disabled": true, "changed": true})
    );
    let shown = cli(app, &["clients", "show", "--client-id", "rs2"]);
    assert_eq!(shown["disabled"], true);
    let enabled = cli(app, &["clients", "enable", "--client-id", "rs2"]);
    assert_eq!(enabled["changed"], true);
    let again = cli(app, &["clients", "enable", "--client-id", "rs2"]);
    assert_eq!(again["changed"], false);
    assert_eq!(app.audit("client.disabled").await.len(), 2);
}
