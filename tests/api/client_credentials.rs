//! The `client_credentials` grant (RFC 6749 §4.4): confidential clients obtain RFC 9068
//! access tokens for themselves; everything else is refused with the exact error code.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use portcullis::audit::{Actor, AuditEvent, AuditKind, Outcome};
use portcullis::clients::{Registration, RegistrationError};
use portcullis::domain::client::{AuthMethod, Client, ClientKind, GrantType, GrantTypes};
use portcullis::domain::redirect_uri::RedirectUri;
use portcullis::domain::scope::ScopeSet;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    PASSWORD, TestApp, WEB_REDIRECT, authorize_path, follow, pkce, query, rp_http, spawn_app,
};

/// A confidential service client allowed client_credentials, with API scopes and (to
/// check they are never granted without a user) the OpenID scopes.
pub fn service(client_id: &str, scopes: &[&str]) -> Registration {
    Registration {
        client_id: Some(client_id.into()),
        name: "Billing service".into(),
        kind: ClientKind::Confidential,
        auth_method: None,
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        allowed_origins: vec![],
        grant_types: vec!["client_credentials".into()],
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        first_party: false,
        refresh_token_delivery: Default::default(),
        id_token_signed_response_alg: None,
        require_pkce: true,
        introspection: false,
        require_mfa: false,
    }
}

pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let mut decode = || -> Value {
        let part = it.next().expect("JWT part");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
    };
    (decode(), decode())
}

/// A raw token request authenticated with HTTP Basic.
pub async fn cc_request(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut body = vec![("grant_type", "client_credentials")];
    body.extend_from_slice(form);
    rp_http()
        .post(app.url("/token"))
        .basic_auth(client_id, Some(secret))
        .form(&body)
        .send()
        .await
        .expect("POST /token")
}

async fn issued(app: &TestApp) -> usize {
    app.audit("token.issued").await.len()
}

#[tokio::test]
async fn a_library_obtains_an_rfc9068_token_for_the_client_itself() {
    let app = spawn_app().await;
    let (_, secret) = app
        .register_client(service(
            "billing",
            &["invoices:read", "invoices:write", "openid"],
        ))
        .await;
    let client = BasicClient::new(ClientId::new("billing".into()))
        .set_client_secret(ClientSecret::new(secret.expect("secret")))
        .set_token_uri(TokenUrl::new(app.url("/token")).expect("token url"));

    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("invoices:read".into()))
        .request_async(&rp_http())
        .await
        .expect("client credentials token");
    assert!(token.refresh_token().is_none(), "RFC 6749 §4.4.3");
    assert_eq!(
        token
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        Some(vec!["invoices:read".to_owned()])
    );
    let (header, claims) = jwt_parts(token.access_token().secret());
    assert_eq!(header["typ"], "at+jwt");
    assert!(header["kid"].is_string());
    assert_eq!(claims["iss"], app.settings.issuer.as_str());
    assert_eq!(claims["sub"], "billing");
    assert_eq!(claims["client_id"], "billing");
    assert_eq!(claims["aud"], app.settings.issuer.as_str());
    assert_eq!(claims["scope"], "invoices:read");
    assert!(claims["jti"].is_string() && claims["iat"].is_i64() && claims["exp"].is_i64());
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        600
    );
    assert!(claims.get("sid").is_none() && claims.get("auth_time").is_none());

    // Without a scope: the client's scopes that make sense without a user.
    let default = client
        .exchange_client_credentials()
        .request_async(&rp_http())
        .await
        .expect("default scope");
    let (_, claims) = jwt_parts(default.access_token().secret());
    assert_eq!(claims["scope"], "invoices:read invoices:write");

    let rows = app.audit("token.issued").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].client_id.as_deref(), Some("billing"));
    assert_eq!(rows[0].details["grant_type"], "client_credentials");
    assert!(rows[0].user_id.is_none() && rows[0].session_id.is_none());
}

#[tokio::test]
async fn the_raw_response_has_no_id_token_or_refresh_token_and_is_not_cached() {
    let app = spawn_app().await;
    let (_, secret) = app
        .register_client(service("billing", &["invoices:read"]))
        .await;
    let response = cc_request(&app, "billing", &secret.expect("secret"), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert!(body.get("id_token").is_none() && body.get("refresh_token").is_none());
}

#[tokio::test]
async fn userinfo_refuses_a_client_token_without_a_server_error() {
    let app = spawn_app().await;
    let (_, secret) = app
        .register_client(service("billing", &["invoices:read"]))
        .await;
    let body: Value = cc_request(&app, "billing", &secret.expect("secret"), &[])
        .await
        .json()
        .await
        .expect("json");
    let token = body["access_token"].as_str().expect("token");
    let response = rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /userinfo");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("challenge")
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
}

#[tokio::test]
async fn every_refusal_has_its_error_code_and_issues_nothing() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let (_, billing) = app
        .register_client(service("billing", &["invoices:read", "openid", "profile"]))
        .await;
    let billing = billing.expect("secret");
    let (_, web) = app.register_client(crate::helpers::web_app(false)).await;
    let web = web.expect("secret");
    let (_, user_only) = app
        .register_client(service("user-only", &["openid", "email"]))
        .await;
    let user_only = user_only.expect("secret");
    let mut spa = crate::helpers::web_app(false);
    spa.client_id = Some("spa".into());
    spa.kind = ClientKind::Spa;
    app.register_client(spa).await;

    let cases: Vec<(&str, reqwest::Response, StatusCode, &str)> = vec![
        (
            "wrong secret",
            cc_request(&app, "billing", &"x".repeat(43), &[]).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "unknown client",
            cc_request(&app, "nobody", &billing, &[]).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "a confidential client without the grant",
            cc_request(&app, "web-app", &web, &[]).await,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
        ),
        (
            "a public client",
            rp_http()
                .post(app.url("/token"))
                .form(&[("grant_type", "client_credentials"), ("client_id", "spa")])
                .send()
                .await
                .expect("POST"),
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
        ),
        (
            "a scope the client does not have",
            cc_request(&app, "billing", &billing, &[("scope", "invoices:write")]).await,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "openid, registered but meaningless without a user",
            cc_request(
                &app,
                "billing",
                &billing,
                &[("scope", "invoices:read openid")],
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "profile",
            cc_request(&app, "billing", &billing, &[("scope", "profile")]).await,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "offline_access",
            cc_request(&app, "billing", &billing, &[("scope", "offline_access")]).await,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "a malformed scope",
            cc_request(&app, "billing", &billing, &[("scope", "invoices\\read")]).await,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "the admin scope the client lacks",
            cc_request(&app, "billing", &billing, &[("scope", "portcullis:admin")]).await,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "no scope, and only user scopes registered",
            cc_request(&app, "user-only", &user_only, &[]).await,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "a repeated scope parameter",
            rp_http()
                .post(app.url("/token"))
                .basic_auth("billing", Some(&billing))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials&scope=a&scope=b")
                .send()
                .await
                .expect("POST"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (what, response, status, error) in cases {
        assert_eq!(response.status(), status, "{what}");
        let body: Value = response.json().await.expect("JSON error");
        assert_eq!(body["error"], error, "{what}: {body}");
        assert!(body.get("access_token").is_none(), "{what}");
    }
    assert_eq!(issued(&app).await, 0, "no token was issued");

    let unsupported = rp_http()
        .post(app.url("/token"))
        .basic_auth("billing", Some(&billing))
        .form(&[("grant_type", "password"), ("username", "alice")])
        .send()
        .await
        .expect("POST");
    assert_eq!(unsupported.status(), StatusCode::BAD_REQUEST);
    let body: Value = unsupported.json().await.expect("json");
    assert_eq!(body["error"], "unsupported_grant_type");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("client_credentials")),
        "{body}"
    );
}

#[tokio::test]
async fn registration_keeps_the_grant_and_the_admin_scope_to_confidential_clients() {
    let app = spawn_app().await;
    let refused = |reg: Registration, what: &'static str| {
        let store = app.store.clone();
        async move {
            let result = portcullis::clients::register(
                store.as_ref(),
                reg,
                time::OffsetDateTime::now_utc(),
                &Actor::cli(),
            )
            .await;
            assert!(
                matches!(result, Err(RegistrationError::Invalid(_))),
                "{what} should be refused"
            );
        }
    };
    let mut spa = service("spa-cc", &["api"]);
    spa.kind = ClientKind::Spa;
    spa.redirect_uris = vec!["https://app.example.com/cb".into()];
    refused(spa, "client_credentials on a SPA").await;
    let mut native = service("native-cc", &["api"]);
    native.kind = ClientKind::Native;
    refused(native, "client_credentials on a native app").await;
    let mut mixed_admin = service("mixed-admin", &["portcullis:admin"]);
    mixed_admin.grant_types = vec!["client_credentials".into(), "authorization_code".into()];
    mixed_admin.redirect_uris = vec![WEB_REDIRECT.into()];
    refused(mixed_admin, "the admin scope next to a user flow").await;
    let mut web_admin = crate::helpers::web_app(false);
    web_admin.scopes = vec!["openid".into(), "portcullis:admin".into()];
    refused(web_admin, "the admin scope on an authorization_code client").await;
    let mut no_redirect = crate::helpers::web_app(false);
    no_redirect.redirect_uris = vec![];
    refused(no_redirect, "authorization_code without a redirect URI").await;
    assert!(
        app.store
            .list_clients(10)
            .await
            .expect("clients")
            .is_empty(),
        "nothing was stored"
    );

    // A service client needs no redirect URI.
    let (client, secret) = app.register_client(service("svc", &["api"])).await;
    assert!(client.redirect_uris.is_empty() && secret.is_some());
    let (admin, _) = app
        .register_client(Registration::admin("Ops".into(), Some("ops".into())))
        .await;
    assert_eq!(
        admin
            .grant_types
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>(),
        vec!["client_credentials"]
    );
    assert_eq!(admin.scopes.to_string(), "portcullis:admin");
}

#[tokio::test]
async fn the_authorization_endpoint_never_grants_the_admin_scope() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    // Registration refuses such a client; one stored behind its back (an older
    // database, a manual edit) must still not obtain the scope for a user.
    let now = time::OffsetDateTime::now_utc();
    let client = Client {
        id: portcullis::domain::client::ClientId::parse("web-app").expect("id"),
        name: "Sneaky".into(),
        kind: ClientKind::Confidential,
        auth_method: AuthMethod::ClientSecretBasic,
        secret_hash: Some(portcullis::domain::secret::OpaqueToken::generate().hash()),
        redirect_uris: vec![RedirectUri::parse(WEB_REDIRECT).expect("uri")],
        post_logout_redirect_uris: vec![],
        allowed_origins: vec![],
        grant_types: GrantTypes::from([GrantType::AuthorizationCode]),
        scopes: ScopeSet::from_tokens(["openid", "portcullis:admin"]),
        first_party: true,
        refresh_token_delivery: Default::default(),
        id_token_signed_response_alg: portcullis::domain::jws::SigningAlg::RS256,
        require_pkce: true,
        disabled: false,
        introspection: false,
        require_mfa: false,
        created_at: now,
        updated_at: now,
    };
    let audit = AuditEvent::new(
        now,
        AuditKind::ClientCreated,
        Outcome::Success,
        &Actor::cli(),
    );
    app.store
        .create_client(&client, &audit)
        .await
        .expect("stored");
    let p = pkce();
    let back = follow(
        &app,
        &app.client,
        &authorize_path(&p, &[("scope", "openid portcullis:admin")]),
        WEB_REDIRECT,
        "allow",
    )
    .await;
    assert_eq!(query(&back, "error").as_deref(), Some("invalid_scope"));
    assert!(query(&back, "code").is_none());
    assert!(app.audit("code.issued").await.is_empty());
}

#[tokio::test]
async fn rotating_a_secret_ends_the_tokens_it_obtained() {
    let app = spawn_app().await;
    let secret = app
        .register_client(portcullis::clients::Registration::admin(
            "Ops".into(),
            Some("ops".into()),
        ))
        .await
        .1
        .expect("secret");
    let token = |secret: String| {
        let url = app.url("/token");
        async move {
            let body: Value = rp_http()
                .post(url)
                .basic_auth("ops", Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("POST /token")
                .json()
                .await
                .expect("JSON");
            body["access_token"].as_str().expect("token").to_owned()
        }
    };
    let old = token(secret).await;
    let users = |t: String| {
        let url = app.url("/admin/v1/users");
        async move {
            rp_http()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .expect("GET")
                .status()
        }
    };
    assert_eq!(users(old.clone()).await, StatusCode::OK);
    let id = portcullis::domain::client::ClientId::parse("ops").expect("id");
    let new_secret = portcullis::clients::rotate_secret(
        app.store.as_ref(),
        &id,
        portcullis::clock::Clock::now(&app.clock),
        &Actor::cli(),
    )
    .await
    .expect("rotate")
    .expect("a new secret");
    // The leaked secret's token stops working at once; a token from the new one works.
    assert_eq!(users(old).await, StatusCode::UNAUTHORIZED);
    let fresh = token(new_secret.expose().to_owned()).await;
    assert_eq!(users(fresh).await, StatusCode::OK);
}

#[tokio::test]
async fn client_ids_shaped_like_user_ids_are_refused() {
    let app = spawn_app().await;
    let now = portcullis::clock::Clock::now(&app.clock);
    let uuid_like = service(&uuid::Uuid::new_v4().to_string(), &["api.read"]);
    assert!(
        portcullis::clients::register(app.store.as_ref(), uuid_like, now, &Actor::cli())
            .await
            .is_err(),
        "RFC 9700 §4.15: a client's sub must not collide with a user's"
    );
    let mut bidi = service("svc", &["api.read"]);
    bidi.name = "Acme \u{202E}evil".into();
    assert!(
        portcullis::clients::register(app.store.as_ref(), bidi, now, &Actor::cli())
            .await
            .is_err()
    );
}
