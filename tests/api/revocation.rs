//! Revocation (RFC 7009), introspection (RFC 7662) and refresh tokens delivered in an
//! HttpOnly cookie to browser apps.

use portcullis::clients::Registration;
use portcullis::domain::client::ClientKind;
use portcullis::domain::client::TokenDelivery;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, assert_oauth_error, code_for, exchange, flow, pkce, public_app, public_tokens,
    refreshing_app, rp_http, set_cookie, spawn_app, web_app,
};
use crate::refresh::setup;

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_owned()
}

async fn revoke(
    app: &crate::helpers::TestApp,
    client: (&str, Option<&str>),
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = rp_http().post(app.url("/revoke"));
    let mut form = form.to_vec();
    match client.1 {
        Some(secret) => request = request.basic_auth(client.0, Some(secret)),
        None => form.push(("client_id", client.0)),
    }
    request.form(&form).send().await.expect("POST /revoke")
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family() {
    let t = setup().await;
    let first = t.tokens("openid").await;
    let rt1 = s(&first, "refresh_token");
    let second: Value = t.refresh(&rt1, &[]).await.json().await.expect("JSON");
    let rt2 = s(&second, "refresh_token");
    let at2 = s(&second, "access_token");

    let r = revoke(
        &t.app,
        ("web-app", Some(&t.secret)),
        &[("token", &rt2), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    t.assert_refresh_refused(&rt2).await;
    // The access token issued with it is denylisted too.
    assert_eq!(t.userinfo(&at2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(t.introspect(&at2).await, json!({"active": false}));
    let audit = t.app.audit("refresh.family_revoked").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].client_id.as_deref(), Some("web-app"));
    // Revoking again is still 200 (RFC 7009 §2.2).
    let again = revoke(&t.app, ("web-app", Some(&t.secret)), &[("token", &rt2)]).await;
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn revoking_an_access_token_denylists_it_until_it_expires() {
    let t = setup().await;
    let tokens = t.tokens("openid").await;
    let at = s(&tokens, "access_token");
    assert_eq!(t.userinfo(&at).await, StatusCode::OK);
    // A wrong hint does not matter (§2.1: the server searches every type).
    let r = revoke(
        &t.app,
        ("web-app", Some(&t.secret)),
        &[("token", &at), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(t.userinfo(&at).await, StatusCode::UNAUTHORIZED);
    assert_eq!(t.introspect(&at).await, json!({"active": false}));
    assert_eq!(t.app.audit("token.revoked").await.len(), 1);
    // The refresh token is untouched: revoking an access token does not end the grant.
    assert_eq!(
        t.refresh(&s(&tokens, "refresh_token"), &[]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn revocation_refuses_other_clients_and_unauthenticated_callers() {
    let t = setup().await;
    let other = t
        .app
        .register_client(Registration {
            client_id: Some("other-app".into()),
            ..refreshing_app()
        })
        .await
        .1
        .expect("secret");
    let tokens = t.tokens("openid").await;
    let rt = s(&tokens, "refresh_token");
    let at = s(&tokens, "access_token");
    for token in [&rt, &at] {
        let r = revoke(&t.app, ("other-app", Some(&other)), &[("token", token)]).await;
        assert_oauth_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    }
    let r = revoke(&t.app, ("web-app", Some("wrong-secret")), &[("token", &rt)]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let anonymous = rp_http()
        .post(t.app.url("/revoke"))
        .form(&[("token", rt.as_str())])
        .send()
        .await
        .expect("POST");
    // RFC 6749 §5.2: no Authorization header, so 400 and no challenge.
    assert_oauth_error(anonymous, StatusCode::BAD_REQUEST, "invalid_client").await;
    let no_token = revoke(&t.app, ("web-app", Some(&t.secret)), &[]).await;
    assert_oauth_error(no_token, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Nothing was revoked.
    assert_eq!(t.userinfo(&at).await, StatusCode::OK);
    assert_eq!(t.refresh(&rt, &[]).await.status(), StatusCode::OK);
    // Unknown and malformed tokens: 200 and no effect (§2.2).
    for token in ["nonsense", &"A".repeat(43), "a.b.c"] {
        let r = revoke(&t.app, ("web-app", Some(&t.secret)), &[("token", token)]).await;
        assert_eq!(r.status(), StatusCode::OK, "{token}");
    }
}

#[tokio::test]
async fn introspection_describes_live_tokens_and_nothing_else() {
    let t = setup().await;
    let tokens = t.tokens("openid profile").await;
    let at = s(&tokens, "access_token");
    let rt = s(&tokens, "refresh_token");

    let live = t.introspect(&at).await;
    assert_eq!(live["active"], true);
    assert_eq!(live["client_id"], "web-app");
    assert_eq!(live["scope"], "openid profile");
    assert_eq!(live["token_type"], "Bearer");
    assert_eq!(live["iss"], t.app.settings.issuer.as_str());
    assert!(live["sub"].is_string() && live["exp"].is_i64() && live["jti"].is_string());

    let refresh = t.introspect(&rt).await;
    assert_eq!(refresh["active"], true);
    assert_eq!(refresh["token_type"], "refresh_token");
    assert_eq!(refresh["sub"], live["sub"]);

    // Unknown, malformed, and a token with a forged signature.
    let mut forged = at.clone();
    forged.pop();
    forged.push(if at.ends_with('A') { 'B' } else { 'A' });
    for token in ["unknown", &"A".repeat(43), &forged] {
        assert_eq!(
            t.introspect(token).await,
            json!({"active": false}),
            "{token}"
        );
    }
    // Rotated refresh token.
    let next: Value = t.refresh(&rt, &[]).await.json().await.expect("JSON");
    assert_eq!(t.introspect(&rt).await, json!({"active": false}));
    assert_eq!(
        t.introspect(&s(&next, "refresh_token")).await["active"],
        true
    );
    // Expired access token.
    t.app.clock.advance(time::Duration::minutes(11));
    assert_eq!(t.introspect(&at).await, json!({"active": false}));
    assert!(!t.app.audit("token.introspected").await.is_empty());
}

#[tokio::test]
async fn introspection_requires_client_authentication() {
    let t = setup().await;
    let at = s(&t.tokens("openid").await, "access_token");
    let anonymous = rp_http()
        .post(t.app.url("/introspect"))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .expect("POST");
    assert_oauth_error(anonymous, StatusCode::BAD_REQUEST, "invalid_client").await;
    let wrong = rp_http()
        .post(t.app.url("/introspect"))
        .basic_auth("web-app", Some("not-the-secret"))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .expect("POST");
    assert_oauth_error(wrong, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn introspection_sees_session_and_family_revocation() {
    let t = setup().await;
    let tokens = t.tokens("openid").await;
    let at = s(&tokens, "access_token");
    let rt = s(&tokens, "refresh_token");
    let csrf = t.app.account_csrf(&t.app.client).await;
    t.app
        .post_form(&t.app.client, "/logout/confirm", &[("csrf_token", &csrf)])
        .await;
    // The session ended: its access token (sid) and its refresh family are inactive.
    assert_eq!(t.introspect(&at).await, json!({"active": false}));
    assert_eq!(t.introspect(&rt).await, json!({"active": false}));
}

// ---------------------------------------------------------------------------------------
// Refresh tokens in an HttpOnly cookie.

const SPA_ORIGIN: &str = "http://127.0.0.1:5173";
const SPA_REDIRECT: &str = "http://127.0.0.1:5173/callback";

fn spa_http(origin: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ORIGIN,
        reqwest::header::HeaderValue::from_str(origin).expect("origin"),
    );
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("client")
}

async fn cookie_refresh(
    app: &crate::helpers::TestApp,
    origin: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut request = spa_http(origin)
        .post(app.url("/token"))
        .form(&[("grant_type", "refresh_token"), ("client_id", "spa")]);
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("portcullis_rt_spa={cookie}"));
    }
    request.send().await.expect("POST /token")
}

fn refresh_cookie_value(response: &reqwest::Response) -> String {
    let header = set_cookie(response, "portcullis_rt_spa").expect("a refresh cookie");
    header
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("cookie value")
}

/// A provider with alice and the SPA client `spa` receiving refresh tokens in a cookie.
async fn cookie_spa_app() -> crate::helpers::TestApp {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.register_client(Registration {
        client_id: Some("spa".into()),
        kind: ClientKind::Spa,
        redirect_uris: vec![SPA_REDIRECT.into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        refresh_token_delivery: TokenDelivery::Cookie,
        ..web_app(true)
    })
    .await;
    app
}

/// Signs alice in for `spa` and redeems the code from the app's origin.
async fn cookie_spa_sign_in(app: &crate::helpers::TestApp) -> reqwest::Response {
    let p = pkce();
    let c = code_for(app, "spa", SPA_REDIRECT, &p).await;
    let spa = spa_http(SPA_ORIGIN);
    flow::code_exchange(
        &spa,
        &app.address,
        "spa",
        None,
        &c,
        SPA_REDIRECT,
        &p.verifier,
    )
    .send()
    .await
    .expect("POST /token")
}

#[tokio::test]
async fn browser_apps_can_get_their_refresh_token_in_an_httponly_cookie() {
    let app = cookie_spa_app().await;
    let response = cookie_spa_sign_in(&app).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        SPA_ORIGIN
    );
    assert_eq!(
        response.headers()["access-control-allow-credentials"],
        "true"
    );
    let header = set_cookie(&response, "portcullis_rt_spa").expect("refresh cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/token",
        "Max-Age=86400",
    ] {
        assert!(
            header.contains(attribute),
            "{attribute} missing in {header}"
        );
    }
    let rt1 = refresh_cookie_value(&response);
    let body: Value = response.json().await.expect("JSON");
    // No other page can make the browser redeem a code for this client (and plant its
    // own refresh cookie): another origin, or a top-level form navigation, is refused.
    let p2 = pkce();
    let c2 = code_for(&app, "spa", SPA_REDIRECT, &p2).await;
    for (origin, mode) in [("http://127.0.0.1:6666", "cors"), (SPA_ORIGIN, "navigate")] {
        let spa = spa_http(origin);
        let planted = flow::code_exchange(
            &spa,
            &app.address,
            "spa",
            None,
            &c2,
            SPA_REDIRECT,
            &p2.verifier,
        )
        .header("sec-fetch-mode", mode)
        .send()
        .await
        .expect("POST /token");
        assert!(set_cookie(&planted, "portcullis_rt_spa").is_none());
        assert_oauth_error(planted, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    assert!(
        body.get("refresh_token").is_none(),
        "never in the body: {body}"
    );
    assert!(body["access_token"].is_string());

    // From the app's origin, the cookie alone refreshes.
    let r = cookie_refresh(&app, SPA_ORIGIN, Some(&rt1)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rt2 = refresh_cookie_value(&r);
    assert_ne!(rt1, rt2);
    let body: Value = r.json().await.expect("JSON");
    assert!(body.get("refresh_token").is_none());

    // From another origin the cookie is refused and nothing rotates.
    let evil = cookie_refresh(&app, "http://127.0.0.1:6666", Some(&rt2)).await;
    assert!(
        evil.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert_oauth_error(evil, StatusCode::BAD_REQUEST, "invalid_request").await;
    let no_origin = rp_http()
        .post(app.url("/token"))
        .header("cookie", format!("portcullis_rt_spa={rt2}"))
        .form(&[("grant_type", "refresh_token"), ("client_id", "spa")])
        .send()
        .await
        .expect("POST");
    assert_oauth_error(no_origin, StatusCode::BAD_REQUEST, "invalid_request").await;
    // A token in the body is refused for a cookie client.
    let in_body = spa_http(SPA_ORIGIN)
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "spa"),
            ("refresh_token", rt2.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_oauth_error(in_body, StatusCode::BAD_REQUEST, "invalid_request").await;
    let missing = cookie_refresh(&app, SPA_ORIGIN, None).await;
    assert_oauth_error(missing, StatusCode::BAD_REQUEST, "invalid_grant").await;

    // Reuse detection works the same: replaying the old cookie after the retry window
    // revokes the family, the newest cookie included.
    let r = cookie_refresh(&app, SPA_ORIGIN, Some(&rt2)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rt3 = refresh_cookie_value(&r);
    app.clock.advance(time::Duration::seconds(11));
    let replay = cookie_refresh(&app, SPA_ORIGIN, Some(&rt2)).await;
    assert_oauth_error(replay, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let newest = cookie_refresh(&app, SPA_ORIGIN, Some(&rt3)).await;
    assert_oauth_error(newest, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(app.audit("refresh.reuse_detected").await.len(), 2);

    // The preflight allows credentials for the app's origin only.
    let preflight = spa_http(SPA_ORIGIN)
        .request(reqwest::Method::OPTIONS, app.url("/token"))
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(
        preflight.headers()["access-control-allow-credentials"],
        "true"
    );
}

#[tokio::test]
async fn cookie_delivery_is_only_for_spa_clients_with_the_refresh_grant() {
    let app = spawn_app().await;
    let (store, now) = (
        app.store.as_ref(),
        portcullis::clock::Clock::now(&app.clock),
    );
    let actor = portcullis::audit::Actor::cli();
    let confidential = Registration {
        refresh_token_delivery: TokenDelivery::Cookie,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        ..web_app(false)
    };
    assert!(
        portcullis::clients::register(store, confidential, now, &actor)
            .await
            .is_err()
    );
    let offline = Registration {
        client_id: Some("spa-offline".into()),
        kind: ClientKind::Spa,
        redirect_uris: vec![SPA_REDIRECT.into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: vec!["openid".into(), "offline_access".into()],
        refresh_token_delivery: TokenDelivery::Cookie,
        ..web_app(false)
    };
    assert!(
        portcullis::clients::register(store, offline, now, &actor)
            .await
            .is_err(),
        "a cookie can only hold session-bound refresh tokens"
    );
    let no_grant = Registration {
        client_id: Some("spa".into()),
        kind: ClientKind::Spa,
        redirect_uris: vec![SPA_REDIRECT.into()],
        refresh_token_delivery: TokenDelivery::Cookie,
        ..web_app(false)
    };
    assert!(
        portcullis::clients::register(store, no_grant, now, &actor)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn native_apps_get_their_refresh_token_in_the_body() {
    // Native apps keep their refresh token themselves (body delivery).
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let redirect = "http://127.0.0.1/callback";
    app.register_client(public_app("native", ClientKind::Native, redirect))
        .await;
    let body = public_tokens(&app, "native", redirect).await;
    let rt = s(&body, "refresh_token");
    let r = crate::helpers::refresh_as(&app, "native", None, &rt, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Introspection needs a client that can authenticate (RFC 7662 §2.1): a public client
    // could otherwise learn about any token it holds without proving who it is.
    let public = rp_http()
        .post(app.url("/introspect"))
        .form(&[
            ("token", s(&body, "access_token").as_str()),
            ("client_id", "native"),
        ])
        .send()
        .await
        .expect("POST");
    assert_oauth_error(public, StatusCode::BAD_REQUEST, "invalid_client").await;
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_cookie_family_and_clears_the_cookie() {
    let app = cookie_spa_app().await;
    let response = cookie_spa_sign_in(&app).await;
    let rt = refresh_cookie_value(&response);
    let body: Value = response.json().await.expect("JSON");
    let hint = s(&body, "id_token");
    let logout = app
        .get(
            &app.client,
            &format!("/logout?client_id=spa&id_token_hint={hint}"),
        )
        .await;
    assert_eq!(logout.status(), StatusCode::OK, "the signed-out page");
    let cleared = set_cookie(&logout, "portcullis_rt_spa").expect("the refresh cookie is cleared");
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Path=/token"),
        "{cleared}"
    );
    let after = cookie_refresh(&app, SPA_ORIGIN, Some(&rt)).await;
    assert_oauth_error(after, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(app.audit("logout").await.len(), 1);
}

// ---------------------------------------------------------------------------------------
// A revocation holds until every token it covers has expired.

/// A client without the refresh grant: its access tokens are revoked only through the
/// session they carry (`sid`) or their client.
async fn session_only_app(
    configure: impl FnOnce(&mut portcullis::config::Settings),
) -> (crate::helpers::TestApp, String) {
    let app = crate::helpers::spawn_app_with(configure).await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let secret = app.register_client(web_app(false)).await.1.expect("secret");
    (app, secret)
}

async fn session_access_token(app: &crate::helpers::TestApp, secret: &str) -> String {
    let p = pkce();
    let c = crate::helpers::code(app, &app.client, &p, &[("scope", "openid profile")]).await;
    let response = exchange(
        app,
        "web-app",
        Some(secret),
        &c,
        crate::helpers::WEB_REDIRECT,
        &p.verifier,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.expect("token JSON");
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    s(&tokens, "access_token")
}

async fn userinfo_status(app: &crate::helpers::TestApp, at: &str) -> StatusCode {
    rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .expect("GET /userinfo")
        .status()
}

async fn introspect_as(app: &crate::helpers::TestApp, secret: &str, at: &str) -> Value {
    rp_http()
        .post(app.url("/introspect"))
        .basic_auth("web-app", Some(secret))
        .form(&[("token", at)])
        .send()
        .await
        .expect("POST /introspect")
        .json()
        .await
        .expect("JSON")
}

/// Runs housekeeping as the server's schedule does, until nothing is left to purge.
async fn housekeeping(app: &crate::helpers::TestApp) {
    let now = portcullis::clock::Clock::now(&app.clock);
    let cutoffs = portcullis::startup::purge_cutoffs(&app.settings, now);
    while app
        .store
        .purge_expired(&cutoffs, 1000)
        .await
        .expect("housekeeping")
        > 0
    {}
}

#[tokio::test]
async fn a_signed_out_sessions_access_tokens_stay_revoked_after_housekeeping() {
    // The outside review's reproduction: a one-minute idle timeout, sign out, and wait
    // until housekeeping has run past the session's expiry.
    let (app, secret) = session_only_app(|s| {
        s.session.idle_timeout = std::time::Duration::from_secs(60);
        s.session.touch_interval = std::time::Duration::from_secs(30);
    })
    .await;
    let at = session_access_token(&app, &secret).await;
    assert_eq!(userinfo_status(&app, &at).await, StatusCode::OK);

    let csrf = app.account_csrf(&app.client).await;
    app.post_form(&app.client, "/logout/confirm", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(userinfo_status(&app, &at).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        introspect_as(&app, &secret, &at).await,
        json!({"active": false})
    );

    // 80 s later the session is past its idle expiry; the token (10 minutes) is not.
    app.clock.advance(time::Duration::seconds(80));
    housekeeping(&app).await;
    assert_eq!(userinfo_status(&app, &at).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        introspect_as(&app, &secret, &at).await,
        json!({"active": false})
    );

    // And up to the token's own expiry.
    app.clock.advance(time::Duration::minutes(8));
    housekeeping(&app).await;
    assert_eq!(userinfo_status(&app, &at).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_out_everywhere_reaches_tokens_of_a_session_that_idled_out() {
    // A session that ended by its idle timeout is still revoked by "sign out everywhere"
    // (an admin reacting to a stolen device), even after housekeeping ran.
    let (app, secret) = session_only_app(|s| {
        s.session.idle_timeout = std::time::Duration::from_secs(60);
        s.session.touch_interval = std::time::Duration::from_secs(30);
    })
    .await;
    let at = session_access_token(&app, &secret).await;
    app.clock.advance(time::Duration::seconds(80));
    housekeeping(&app).await;
    assert_eq!(userinfo_status(&app, &at).await, StatusCode::OK);

    let now = portcullis::clock::Clock::now(&app.clock);
    let user = portcullis::users::find_by_name(app.store.as_ref(), "alice")
        .await
        .expect("alice");
    portcullis::users::revoke_all_sessions(
        app.store.as_ref(),
        user.id,
        now,
        &portcullis::audit::Actor::cli(),
    )
    .await
    .expect("revoke");
    housekeeping(&app).await;
    assert_eq!(userinfo_status(&app, &at).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        introspect_as(&app, &secret, &at).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn deleting_a_client_ends_its_access_tokens() {
    let (app, secret) = session_only_app(|_| {}).await;
    let at = session_access_token(&app, &secret).await;
    assert_eq!(userinfo_status(&app, &at).await, StatusCode::OK);
    // A resource server (another confidential client, with the permission to introspect
    // other clients' tokens) asks about the token.
    let (_, rs_secret) = app
        .register_client(portcullis::clients::Registration {
            client_id: Some("resource-server".into()),
            name: "Resource server".into(),
            grant_types: vec!["client_credentials".into()],
            redirect_uris: vec![],
            introspection: true,
            ..web_app(false)
        })
        .await;
    let rs_secret = rs_secret.expect("secret");
    let ask = || async {
        rp_http()
            .post(app.url("/introspect"))
            .basic_auth("resource-server", Some(&rs_secret))
            .form(&[("token", at.as_str())])
            .send()
            .await
            .expect("POST /introspect")
            .json::<Value>()
            .await
            .expect("JSON")
    };
    assert_eq!(ask().await["active"], true);

    let id = portcullis::domain::client::ClientId::parse("web-app").expect("id");
    let now = portcullis::clock::Clock::now(&app.clock);
    assert!(
        portcullis::clients::delete(
            app.store.as_ref(),
            &id,
            now,
            &portcullis::audit::Actor::cli()
        )
        .await
        .expect("delete")
    );
    assert_eq!(userinfo_status(&app, &at).await, StatusCode::UNAUTHORIZED);
    assert_eq!(ask().await, json!({"active": false}));
}

/// Sends `form` to `path` as `client_id`, authenticating with `method` (RFC 6749 §2.3.1).
async fn post_as(
    app: &crate::helpers::TestApp,
    path: &str,
    method: &str,
    client: (&str, Option<&str>),
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = rp_http().post(app.url(path));
    let mut form = form.to_vec();
    match method {
        "client_secret_basic" => request = request.basic_auth(client.0, client.1),
        "client_secret_post" => {
            form.push(("client_id", client.0));
            form.push(("client_secret", client.1.expect("a secret")));
        }
        "none" => form.push(("client_id", client.0)),
        other => panic!("unexpected method {other}"),
    }
    request.form(&form).send().await.expect("POST")
}

/// A client registered for `method` and an access token it obtained at `/token` with
/// that method: client_credentials for secret methods, a code for `none`.
async fn holder(app: &crate::helpers::TestApp, method: &str) -> (String, Option<String>, String) {
    use portcullis::domain::client::AuthMethod;
    let client_id = format!(
        "{}-{}",
        method.replace('_', "-"),
        uuid::Uuid::new_v4().simple()
    );
    let auth = AuthMethod::parse(method).expect("a known method");
    let response = if auth == AuthMethod::None {
        let redirect = "http://127.0.0.1/cb";
        app.register_client(Registration {
            client_id: Some(client_id.clone()),
            kind: ClientKind::Native,
            auth_method: Some(auth),
            redirect_uris: vec![redirect.into()],
            ..web_app(true)
        })
        .await;
        let p = pkce();
        let code = code_for(app, &client_id, redirect, &p).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", &p.verifier),
        ];
        post_as(app, "/token", method, (&client_id, None), &form).await
    } else {
        let secret = app
            .register_client(Registration {
                client_id: Some(client_id.clone()),
                auth_method: Some(auth),
                ..crate::client_credentials::service("x", &["invoices:read"])
            })
            .await
            .1;
        let form = [("grant_type", "client_credentials")];
        let r = post_as(
            app,
            "/token",
            method,
            (&client_id, secret.as_deref()),
            &form,
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "/token with {method}");
        let body: Value = r.json().await.expect("JSON");
        return (client_id, secret, s(&body, "access_token"));
    };
    assert_eq!(response.status(), StatusCode::OK, "/token with {method}");
    let body: Value = response.json().await.expect("JSON");
    (client_id, None, s(&body, "access_token"))
}

#[tokio::test]
async fn every_advertised_client_authentication_method_works_at_its_endpoint() {
    let app = spawn_app().await;
    app.create_user_named("alice", None, PASSWORD).await;
    let doc: Value = rp_http()
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("GET metadata")
        .json()
        .await
        .expect("JSON");
    let methods = |key: &str| -> Vec<String> {
        doc[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}"))
            .iter()
            .map(|m| m.as_str().expect("a string").to_owned())
            .collect()
    };
    // /token: `holder` obtains a token with each advertised method.
    for method in methods("token_endpoint_auth_methods_supported") {
        holder(&app, &method).await;
    }
    for method in methods("revocation_endpoint_auth_methods_supported") {
        let (id, secret, token) = holder(&app, &method).await;
        let form = [("token", token.as_str())];
        let r = post_as(&app, "/revoke", &method, (&id, secret.as_deref()), &form).await;
        assert_eq!(r.status(), StatusCode::OK, "/revoke with {method}");
        let audit = app.audit("token.revoked").await;
        assert!(
            audit
                .iter()
                .any(|a| a.client_id.as_deref() == Some(id.as_str())),
            "{method}"
        );
    }
    let introspection = methods("introspection_endpoint_auth_methods_supported");
    // RFC 7662 §2.1: the caller authenticates; a public client cannot.
    assert!(
        !introspection.iter().any(|m| m == "none"),
        "{introspection:?}"
    );
    assert!(!introspection.is_empty());
    for method in introspection {
        let (id, secret, token) = holder(&app, &method).await;
        let form = [("token", token.as_str())];
        let r = post_as(
            &app,
            "/introspect",
            &method,
            (&id, secret.as_deref()),
            &form,
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "/introspect with {method}");
        let answer: Value = r.json().await.expect("JSON");
        assert_eq!(answer["active"], true, "/introspect with {method}");
        assert_eq!(answer["client_id"], id.as_str());
    }
}
