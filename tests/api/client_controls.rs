//! Client controls (issue 10): a client can be disabled (suspended: refused everywhere,
//! its tokens with it, until it is enabled again), and introspecting another client's
//! tokens needs the client's `introspection` permission (RFC 7662 §4).

use portcullis::audit::Actor;
use portcullis::clients::{ClientUpdate, Registration};
use portcullis::clock::Clock;
use portcullis::domain::client::ClientId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::client_credentials::{cc_request, service};
use crate::helpers::{
    TestApp, WEB_REDIRECT, assert_oauth_error, authorize_path, code, exchange_web, pkce, rp_http,
};
use crate::refresh::setup;

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_owned()
}

fn id(raw: &str) -> ClientId {
    ClientId::parse(raw).expect("client id")
}

async fn set_disabled(app: &TestApp, client: &str, disabled: bool) -> bool {
    let now = app.clock.now();
    portcullis::clients::set_disabled(
        app.store.as_ref(),
        &id(client),
        disabled,
        now,
        &Actor::cli(),
    )
    .await
    .expect("set_disabled")
}

async fn set_introspection(app: &TestApp, client: &str, allowed: bool) {
    let now = app.clock.now();
    portcullis::clients::update(
        app.store.as_ref(),
        &id(client),
        ClientUpdate {
            introspection: Some(allowed),
            ..Default::default()
        },
        now,
        &Actor::cli(),
    )
    .await
    .expect("update");
}

/// A resource server: a confidential client that only obtains tokens for itself and
/// introspects the tokens it is shown.
async fn resource_server(app: &TestApp, introspection: bool) -> String {
    app.register_client(Registration {
        client_id: Some("resource-server".into()),
        introspection,
        ..service("x", &["invoices:read"])
    })
    .await
    .1
    .expect("secret")
}

async fn introspect_as(app: &TestApp, client: &str, secret: &str, token: &str) -> Value {
    let response = rp_http()
        .post(app.url("/introspect"))
        .basic_auth(client, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("POST /introspect");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("introspection JSON")
}

#[tokio::test]
async fn disabling_a_client_suspends_it_and_its_tokens_everywhere() {
    let tokens = setup().await;
    let secret = tokens.secret.clone();
    let rs = resource_server(&tokens.app, true).await;
    let first = tokens.tokens("openid").await;
    let (at, rt) = (s(&first, "access_token"), s(&first, "refresh_token"));
    let app = &tokens.app;
    assert_eq!(tokens.userinfo(&at).await, StatusCode::OK);
    assert_eq!(
        introspect_as(app, "resource-server", &rs, &at).await["active"],
        true
    );
    // A code obtained before the client is disabled.
    let p = pkce();
    let pending_code = code(app, &app.client, &p, &[("scope", "openid")]).await;

    assert!(set_disabled(app, "web-app", true).await);
    assert!(
        !set_disabled(app, "web-app", true).await,
        "already disabled"
    );
    let audit = app.audit("client.disabled").await;
    assert_eq!(audit.len(), 1, "only the change is audited");
    assert_eq!(audit[0].client_id.as_deref(), Some("web-app"));

    // Its access tokens: refused at /userinfo, inactive at /introspect.
    assert_eq!(tokens.userinfo(&at).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        introspect_as(app, "resource-server", &rs, &at).await,
        json!({"active": false})
    );
    // /token: every grant is invalid_client (RFC 6749 §5.2), refresh included.
    assert_oauth_error(
        tokens.refresh(&rt, &[]).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    assert_oauth_error(
        exchange_web(app, &secret, &pending_code, &p.verifier).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    // /authorize: an error page, never a redirect to the client (RFC 6749 §4.1.2.1).
    let refused = app.get(&app.client, &authorize_path(&pkce(), &[])).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.headers().get("location").is_none());
    let page = refused.text().await.expect("page");
    assert!(page.contains("disabled"), "{page}");

    // Enabled again: new sign-ins work, and so do the tokens it held (a suspension).
    assert!(set_disabled(app, "web-app", false).await);
    assert_eq!(app.audit("client.enabled").await.len(), 1);
    let again = tokens.tokens("openid").await;
    assert_eq!(
        tokens.userinfo(&s(&again, "access_token")).await,
        StatusCode::OK
    );
    assert_eq!(tokens.userinfo(&at).await, StatusCode::OK);
    assert_eq!(tokens.refresh(&rt, &[]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_disabled_client_obtains_no_tokens_and_its_own_tokens_end() {
    let app = crate::helpers::spawn_app().await;
    let rs = resource_server(&app, true).await;
    let (_, svc) = app
        .register_client(service("billing", &["invoices:read"]))
        .await;
    let svc = svc.expect("secret");
    let response = cc_request(&app, "billing", &svc, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let at = s(&response.json().await.expect("JSON"), "access_token");
    assert_eq!(
        introspect_as(&app, "resource-server", &rs, &at).await["active"],
        true
    );

    set_disabled(&app, "billing", true).await;
    assert_oauth_error(
        cc_request(&app, "billing", &svc, &[]).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    assert_eq!(
        introspect_as(&app, "resource-server", &rs, &at).await,
        json!({"active": false})
    );
    // A disabled client cannot introspect either.
    set_disabled(&app, "resource-server", true).await;
    let response = rp_http()
        .post(app.url("/introspect"))
        .basic_auth("resource-server", Some(&rs))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .expect("POST /introspect");
    assert_oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn a_disabled_admin_clients_tokens_are_refused_by_the_admin_api() {
    let app = crate::helpers::spawn_app().await;
    let (_, secret) = app
        .register_client(Registration::admin("Ops".into(), Some("ops".into())))
        .await;
    let secret = secret.expect("secret");
    let response = cc_request(&app, "ops", &secret, &[("scope", "portcullis:admin")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = s(&response.json().await.expect("JSON"), "access_token");
    let list = || async {
        rp_http()
            .get(app.url("/admin/v1/clients"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET /admin/v1/clients")
            .status()
    };
    assert_eq!(list().await, StatusCode::OK);
    set_disabled(&app, "ops", true).await;
    assert_eq!(list().await, StatusCode::UNAUTHORIZED);
    let denied = app.audit("admin.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].client_id.as_deref(), Some("ops"));
    set_disabled(&app, "ops", false).await;
    assert_eq!(list().await, StatusCode::OK);
}

#[tokio::test]
async fn introspecting_another_clients_tokens_needs_the_permission() {
    let t = setup().await;
    let rs = resource_server(&t.app, false).await;
    let tokens = t.tokens("openid").await;
    let (at, rt) = (s(&tokens, "access_token"), s(&tokens, "refresh_token"));
    let app = &t.app;

    // Its own tokens: always.
    assert_eq!(
        introspect_as(app, "web-app", &t.secret, &at).await["active"],
        true
    );
    let response = cc_request(app, "resource-server", &rs, &[]).await;
    let own = s(&response.json().await.expect("JSON"), "access_token");
    let answer = introspect_as(app, "resource-server", &rs, &own).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "resource-server");

    // Another client's: inactive without the permission (RFC 7662 §2.2), and audited.
    assert_eq!(
        introspect_as(app, "resource-server", &rs, &at).await,
        json!({"active": false})
    );
    let denials = app.audit("token.introspected").await;
    assert!(
        denials.iter().any(|d| {
            d.client_id.as_deref() == Some("resource-server")
                && d.details["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("permission"))
        }),
        "{denials:?}"
    );

    set_introspection(app, "resource-server", true).await;
    let answer = introspect_as(app, "resource-server", &rs, &at).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "web-app");
    // Refresh tokens are still described only to the client they were issued to.
    assert_eq!(
        introspect_as(app, "resource-server", &rs, &rt).await,
        json!({"active": false})
    );
    assert_eq!(
        introspect_as(app, "web-app", &t.secret, &rt).await["active"],
        true
    );

    set_introspection(app, "resource-server", false).await;
    assert_eq!(
        introspect_as(app, "resource-server", &rs, &at).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn a_sign_in_under_way_ends_when_its_client_is_disabled() {
    let t = setup().await;
    let app = &t.app;
    let browser = app.new_browser();
    let start = app.get(&browser, &authorize_path(&pkce(), &[])).await;
    let login = start.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(login.starts_with("/login?tx="), "{login}");
    let html = app.get(&browser, &login).await.text().await.expect("page");
    let form = crate::helpers::LoginForm {
        tx: crate::helpers::hidden_field(&html, "tx").expect("tx"),
        csrf_token: crate::helpers::hidden_field(&html, "csrf_token").expect("csrf"),
    };

    set_disabled(app, "web-app", true).await;
    let signed_in = app
        .submit_login(&browser, &form, "alice", crate::helpers::PASSWORD)
        .await;
    // The sign-in itself succeeds; the authorization it was for does not resume, and
    // nothing is sent to the client.
    let mut response = signed_in;
    for _ in 0..5 {
        let Some(next) = response.headers().get("location") else {
            break;
        };
        let next = next.to_str().expect("location").to_owned();
        assert!(
            !next.starts_with(WEB_REDIRECT),
            "redirected to the client: {next}"
        );
        response = app.get(&browser, &next).await;
    }
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(app.audit("code.issued").await.is_empty());
}

#[tokio::test]
async fn a_disabled_client_cannot_revoke() {
    let t = setup().await;
    let tokens = t.tokens("openid").await;
    let at = s(&tokens, "access_token");
    set_disabled(&t.app, "web-app", true).await;
    let response = rp_http()
        .post(t.app.url("/revoke"))
        .basic_auth("web-app", Some(&t.secret))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .expect("POST /revoke");
    assert_oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // Nothing was revoked: enabled again, the token works.
    set_disabled(&t.app, "web-app", false).await;
    assert_eq!(t.userinfo(&at).await, StatusCode::OK);
}
