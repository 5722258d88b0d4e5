//! Refresh tokens: rotation, families and reuse detection, the retry window, lifetimes,
//! scope narrowing, session binding and offline access (RFC 6749 §6, RFC 9700 §4.14).

use std::time::Duration;

use portcullis::clients::Registration;
use portcullis::domain::client::ClientKind;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    PASSWORD, TestApp, assert_oauth_error, code, exchange_web, flow, pkce, public_app,
    public_tokens, refresh_as, refreshing_app, rp_http, spawn_app, spawn_app_with, web_app,
};

pub struct Setup {
    pub app: TestApp,
    pub secret: String,
}

pub async fn setup_with(configure: impl FnOnce(&mut portcullis::config::Settings)) -> Setup {
    let app = spawn_app_with(configure).await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let secret = app
        .register_client(refreshing_app())
        .await
        .1
        .expect("secret");
    Setup { app, secret }
}

pub async fn setup() -> Setup {
    setup_with(|_| {}).await
}

impl Setup {
    /// Signs in through the pages with `scope` and redeems the code: the token response.
    pub async fn tokens(&self, scope: &str) -> Value {
        let p = pkce();
        let c = code(&self.app, &self.app.client, &p, &[("scope", scope)]).await;
        let response = exchange_web(&self.app, &self.secret, &c, &p.verifier).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("token JSON")
    }

    pub async fn refresh(&self, token: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        refresh_as(&self.app, "web-app", Some(&self.secret), token, extra).await
    }

    /// Presenting `token` is refused with `invalid_grant` (RFC 6749 §5.2).
    pub async fn assert_refresh_refused(&self, token: &str) {
        assert_oauth_error(
            self.refresh(token, &[]).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }

    pub async fn userinfo(&self, access_token: &str) -> StatusCode {
        rp_http()
            .get(self.app.url("/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("GET /userinfo")
            .status()
    }

    pub async fn introspect(&self, token: &str) -> Value {
        let response = rp_http()
            .post(self.app.url("/introspect"))
            .basic_auth("web-app", Some(&self.secret))
            .form(&[("token", token)])
            .send()
            .await
            .expect("POST /introspect");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        response.json().await.expect("introspection JSON")
    }
}

/// `n` refreshes with one token, each on its own task, released at once.
async fn concurrent_refreshes(t: &Setup, token: &str, n: usize) -> Vec<(StatusCode, String)> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (base, secret, token) = (t.app.address.clone(), t.secret.clone(), token.to_owned());
        let barrier = std::sync::Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let request =
                flow::refresh_request(&rp_http(), &base, "web-app", Some(&secret), &token, &[]);
            barrier.wait().await;
            let r = request.send().await.expect("POST /token");
            (r.status(), r.text().await.expect("body"))
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_owned()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

#[tokio::test]
async fn a_refresh_rotates_the_token_and_the_old_one_fails() {
    let t = setup().await;
    let first = t.tokens("openid profile").await;
    let rt1 = s(&first, "refresh_token");
    let response = t.refresh(&rt1, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let second: Value = response.json().await.expect("JSON");
    let rt2 = s(&second, "refresh_token");
    assert_ne!(rt1, rt2, "a refresh must return a new refresh token");
    assert_ne!(s(&first, "access_token"), s(&second, "access_token"));
    assert_eq!(second["token_type"], "Bearer");
    assert_eq!(second["scope"], "openid profile");
    assert_eq!(
        t.userinfo(&s(&second, "access_token")).await,
        StatusCode::OK
    );

    // The new one works (and rotates again) ...
    let third: Value = t.refresh(&rt2, &[]).await.json().await.expect("JSON");
    assert!(third["refresh_token"].is_string(), "{third}");
    assert_eq!(t.app.audit("refresh.rotated").await.len(), 2);
}

#[tokio::test]
async fn replaying_a_rotated_token_revokes_the_whole_family() {
    // The retry window is on by default; a replay after it is reuse.
    let t = setup().await;
    let first = t.tokens("openid profile").await;
    let rt1 = s(&first, "refresh_token");
    let second: Value = t.refresh(&rt1, &[]).await.json().await.expect("JSON");
    let rt2 = s(&second, "refresh_token");
    let at2 = s(&second, "access_token");
    assert_eq!(t.introspect(&at2).await["active"], true);

    t.app.clock.advance(time::Duration::seconds(11));
    t.assert_refresh_refused(&rt1).await;

    // The newest token of the family is dead too, and so are the family's access tokens.
    t.assert_refresh_refused(&rt2).await;
    assert_eq!(t.userinfo(&at2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.userinfo(&s(&first, "access_token")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.introspect(&at2).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        t.introspect(&rt2).await,
        serde_json::json!({"active": false})
    );

    let reuse = t.app.audit("refresh.reuse_detected").await;
    assert_eq!(
        reuse.len(),
        2,
        "the replay and the use of the revoked newest token"
    );
    assert_eq!(reuse[0].client_id.as_deref(), Some("web-app"));
    // The browser session itself is untouched: only the token family is gone.
    assert!(t.app.is_signed_in(&t.app.client).await);
}

#[tokio::test]
async fn concurrent_refreshes_without_the_retry_window_yield_exactly_one_success() {
    let t = setup_with(|s| s.tokens.refresh_token_retry_window = Duration::ZERO).await;
    let rt = s(&t.tokens("openid").await, "refresh_token");
    let responses = concurrent_refreshes(&t, &rt, 20).await;
    let ok = responses
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "exactly one of 20 concurrent refreshes may win");
    for (status, body) in &responses {
        assert!(
            *status == StatusCode::OK
                || (*status == StatusCode::BAD_REQUEST && body.contains("invalid_grant")),
            "{status} {body}"
        );
    }
    // Strict rotation: the other 19 presentations were replays, so the family is revoked
    // and even the winner's successor is dead.
    let (_, winner) = responses
        .iter()
        .find(|(status, _)| *status == StatusCode::OK)
        .expect("a winner");
    let winner: Value = serde_json::from_str(winner).expect("JSON");
    t.assert_refresh_refused(&s(&winner, "refresh_token")).await;
}

#[tokio::test]
async fn concurrent_refreshes_inside_the_retry_window_get_the_identical_successor() {
    let t = setup().await;
    let rt = s(&t.tokens("openid").await, "refresh_token");
    let responses = concurrent_refreshes(&t, &rt, 20).await;
    assert!(
        responses
            .iter()
            .all(|(status, _)| *status == StatusCode::OK),
        "{responses:?}"
    );
    let bodies: Vec<String> = responses.into_iter().map(|(_, body)| body).collect();
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "every retry must get the same response, byte for byte"
    );
    let successor: Value = serde_json::from_str(&bodies[0]).expect("JSON");
    // No new branch: one rotation, and the family is alive.
    assert_eq!(
        t.app
            .audit("refresh.rotated")
            .await
            .iter()
            .filter(|a| a.details.get("retry").is_none())
            .count(),
        1
    );
    assert!(t.app.audit("refresh.reuse_detected").await.is_empty());
    let next = t.refresh(&s(&successor, "refresh_token"), &[]).await;
    assert_eq!(next.status(), StatusCode::OK);
    assert_eq!(
        t.userinfo(&s(&successor, "access_token")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_retry_after_the_window_is_reuse() {
    let t = setup().await;
    let rt1 = s(&t.tokens("openid").await, "refresh_token");
    let first = t.refresh(&rt1, &[]).await.text().await.expect("body");
    t.app.clock.advance(time::Duration::seconds(5));
    let retry = t.refresh(&rt1, &[]).await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.text().await.expect("body"), first);
    t.app.clock.advance(time::Duration::seconds(6));
    t.assert_refresh_refused(&rt1).await;
    let successor: Value = serde_json::from_str(&first).expect("JSON");
    t.assert_refresh_refused(&s(&successor, "refresh_token"))
        .await;
}

#[tokio::test]
async fn an_older_token_is_reuse_even_inside_the_window() {
    let t = setup().await;
    let rt1 = s(&t.tokens("openid").await, "refresh_token");
    let second: Value = t.refresh(&rt1, &[]).await.json().await.expect("JSON");
    let rt2 = s(&second, "refresh_token");
    let third: Value = t.refresh(&rt2, &[]).await.json().await.expect("JSON");
    // rt1 was rotated two rotations ago: serving its old pair again would hand out a
    // token that has moved on, so even inside the window this is reuse.
    t.app.clock.advance(time::Duration::seconds(1));
    t.assert_refresh_refused(&rt1).await;
    t.assert_refresh_refused(&s(&third, "refresh_token")).await;
    assert_eq!(t.app.audit("refresh.reuse_detected").await.len(), 2);
}

#[tokio::test]
async fn a_refresh_token_is_bound_to_its_client() {
    let t = setup().await;
    let other_secret = t
        .app
        .register_client(Registration {
            client_id: Some("other-app".into()),
            ..refreshing_app()
        })
        .await
        .1
        .expect("secret");
    let rt = s(&t.tokens("openid").await, "refresh_token");
    assert_oauth_error(
        refresh_as(&t.app, "other-app", Some(&other_secret), &rt, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    let denied = t.app.audit("token.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].client_id.as_deref(), Some("other-app"));
    // The rightful client can still use it: nothing was rotated or revoked.
    assert_eq!(t.refresh(&rt, &[]).await.status(), StatusCode::OK);
    // A client not allowed the grant is refused before anything is looked up.
    let no_refresh = t
        .app
        .register_client(Registration {
            client_id: Some("code-only".into()),
            ..web_app(true)
        })
        .await
        .1
        .expect("secret");
    assert_oauth_error(
        refresh_as(&t.app, "code-only", Some(&no_refresh), &rt, &[]).await,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    )
    .await;
}

#[tokio::test]
async fn clients_without_the_grant_get_no_refresh_token() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let secret = app.register_client(web_app(true)).await.1.expect("secret");
    let p = pkce();
    let c = code(&app, &app.client, &p, &[]).await;
    let body: Value = exchange_web(&app, &secret, &c, &p.verifier)
        .await
        .json()
        .await
        .expect("JSON");
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test]
async fn a_refresh_may_narrow_the_scope_but_never_widen_it() {
    let t = setup().await;
    let rt1 = s(&t.tokens("openid profile email").await, "refresh_token");
    let widened = t
        .refresh(&rt1, &[("scope", "openid profile email offline_access")])
        .await;
    assert_oauth_error(widened, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let malformed = t.refresh(&rt1, &[("scope", "openid \u{1}")]).await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

    let narrowed: Value = t
        .refresh(&rt1, &[("scope", "openid email")])
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(narrowed["scope"], "email openid");
    assert_eq!(
        claims(&s(&narrowed, "access_token"))["scope"],
        "email openid"
    );
    // The family keeps what the user granted: the next refresh may ask for all of it.
    let full: Value = t
        .refresh(&s(&narrowed, "refresh_token"), &[])
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(full["scope"], "email openid profile");
}

#[tokio::test]
async fn a_refreshed_id_token_keeps_the_original_authentication() {
    let t = setup().await;
    let first = t.tokens("openid profile").await;
    let before = claims(&s(&first, "id_token"));
    t.app.clock.advance(time::Duration::minutes(3));
    let second: Value = t
        .refresh(&s(&first, "refresh_token"), &[])
        .await
        .json()
        .await
        .expect("JSON");
    let after = claims(&s(&second, "id_token"));
    // OpenID Connect Core §12.2.
    for claim in ["iss", "sub", "aud", "azp", "auth_time", "sid"] {
        assert_eq!(before[claim], after[claim], "{claim}");
    }
    assert_eq!(
        after["iat"].as_i64().expect("iat") - before["iat"].as_i64().expect("iat"),
        180
    );
    assert!(after.get("nonce").is_none());
    assert_eq!(
        after["at_hash"],
        portcullis::oauth::claims::at_hash(&s(&second, "access_token"))
    );
}

#[tokio::test]
async fn idle_and_absolute_lifetimes_end_a_family() {
    let t = setup_with(|s| {
        s.tokens.refresh_token_idle_lifetime = Duration::from_secs(3600);
        s.tokens.refresh_token_absolute_lifetime = Duration::from_secs(3 * 3600);
        // Keep the browser session alive longer than the tokens for this test.
        s.session.idle_timeout = Duration::from_secs(24 * 3600);
        s.session.absolute_lifetime = Duration::from_secs(24 * 3600);
    })
    .await;
    // Idle: unused for more than an hour.
    let rt = s(&t.tokens("openid").await, "refresh_token");
    t.app.clock.advance(time::Duration::minutes(61));
    t.assert_refresh_refused(&rt).await;

    // Absolute: used every 50 minutes, it still ends 3 hours after the sign-in.
    let mut rt = s(&t.tokens("openid").await, "refresh_token");
    for _ in 0..3 {
        t.app.clock.advance(time::Duration::minutes(50));
        let r: Value = t.refresh(&rt, &[]).await.json().await.expect("JSON");
        rt = s(&r, "refresh_token");
    }
    assert_eq!(t.introspect(&rt).await["active"], true);
    let exp = t.introspect(&rt).await["exp"].as_i64().expect("exp");
    t.app.clock.advance(time::Duration::minutes(31));
    let now = portcullis::clock::Clock::now(&t.app.clock).unix_timestamp();
    assert!(
        exp <= now,
        "the last token may not outlive the absolute limit"
    );
    t.assert_refresh_refused(&rt).await;
}

#[tokio::test]
async fn spa_refresh_tokens_have_shorter_lifetimes() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let redirect = "http://127.0.0.1:5173/callback";
    app.register_client(public_app("spa", ClientKind::Spa, redirect))
        .await;
    let body = public_tokens(&app, "spa", redirect).await;
    let rt = s(&body, "refresh_token");
    // Default SPA idle lifetime: 1 hour (the browser session is touched by the refresh,
    // so only the token's own idle limit can end it here).
    app.clock.advance(time::Duration::minutes(59));
    let r = refresh_as(&app, "spa", None, &rt, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rt = s(&r.json::<Value>().await.expect("JSON"), "refresh_token");
    app.clock.advance(time::Duration::minutes(61));
    assert_oauth_error(
        refresh_as(&app, "spa", None, &rt, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn session_bound_tokens_die_at_logout_but_offline_ones_survive() {
    let t = setup().await;
    let online = t.tokens("openid profile").await;
    let offline = t.tokens("openid offline_access").await;
    // Sign out through the account page.
    let csrf = t.app.account_csrf(&t.app.client).await;
    let out = t
        .app
        .post_form(&t.app.client, "/logout/confirm", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);

    t.assert_refresh_refused(&s(&online, "refresh_token")).await;
    assert_eq!(
        t.userinfo(&s(&online, "access_token")).await,
        StatusCode::UNAUTHORIZED
    );
    let families = t.app.audit("refresh.rotated").await;
    assert!(families.is_empty());

    let r = t.refresh(&s(&offline, "refresh_token"), &[]).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "offline access outlives the session"
    );
    let r: Value = r.json().await.expect("JSON");
    let at = claims(&s(&r, "access_token"));
    assert!(
        at.get("sid").is_none(),
        "an offline token is bound to no session: {at}"
    );
    assert_eq!(t.userinfo(&s(&r, "access_token")).await, StatusCode::OK);
}

#[tokio::test]
async fn sign_out_everywhere_revokes_offline_families_too() {
    let t = setup().await;
    let offline = t.tokens("openid offline_access").await;
    let csrf = t.app.account_csrf(&t.app.client).await;
    let out = t
        .app
        .post_form(
            &t.app.client,
            "/account/sessions/revoke-all",
            &[("csrf_token", &csrf)],
        )
        .await;
    assert!(out.status().is_redirection(), "{}", out.status());
    t.assert_refresh_refused(&s(&offline, "refresh_token"))
        .await;
}

#[tokio::test]
async fn a_disabled_user_cannot_refresh() {
    let t = setup().await;
    let offline = t.tokens("openid offline_access").await;
    let user = t
        .app
        .store
        .find_user(&portcullis::domain::user::Username::parse("alice").expect("name"))
        .await
        .expect("lookup")
        .expect("alice")
        .0;
    t.app
        .store
        .set_user_disabled(
            user.id,
            true,
            portcullis::clock::Clock::now(&t.app.clock),
            &portcullis::audit::AuditEvent::new(
                portcullis::clock::Clock::now(&t.app.clock),
                portcullis::audit::AuditKind::UserDisabled,
                portcullis::audit::Outcome::Success,
                &portcullis::audit::Actor::cli(),
            ),
        )
        .await
        .expect("disable");
    t.assert_refresh_refused(&s(&offline, "refresh_token"))
        .await;
}

#[tokio::test]
async fn malformed_and_unknown_refresh_tokens_are_invalid_grant() {
    let t = setup().await;
    for token in ["x", "not a token at all", &"A".repeat(43)] {
        t.assert_refresh_refused(token).await;
    }
    let missing = rp_http()
        .post(t.app.url("/token"))
        .basic_auth("web-app", Some(&t.secret))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .expect("POST");
    assert_oauth_error(missing, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_certified_library_refreshes() {
    use oauth2::TokenResponse as _;
    let t = setup().await;
    let rt = s(&t.tokens("openid profile").await, "refresh_token");
    let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new("web-app".into()))
        .set_client_secret(oauth2::ClientSecret::new(t.secret.clone()))
        .set_auth_uri(oauth2::AuthUrl::new(t.app.url("/authorize")).expect("url"))
        .set_token_uri(oauth2::TokenUrl::new(t.app.url("/token")).expect("url"));
    let http = rp_http();
    let refreshed = client
        .exchange_refresh_token(&oauth2::RefreshToken::new(rt.clone()))
        .request_async(&http)
        .await
        .expect("refresh with the oauth2 crate");
    let new_rt = refreshed.refresh_token().expect("a rotated refresh token");
    assert_ne!(new_rt.secret(), &rt);
    assert_eq!(
        t.userinfo(refreshed.access_token().secret()).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn housekeeping_wipes_sealed_responses_and_purges_dead_families() {
    use portcullis::clock::Clock as _;
    use portcullis::domain::secret::OpaqueToken;
    let t = setup().await;
    let rt1 = s(&t.tokens("openid").await, "refresh_token");
    let rt2 = s(
        &t.refresh(&rt1, &[])
            .await
            .json::<Value>()
            .await
            .expect("JSON"),
        "refresh_token",
    );
    let hash = |token: &str| OpaqueToken::parse(token).expect("token shape").hash();
    let find = |token: String| {
        let store = std::sync::Arc::clone(&t.app.store);
        async move {
            store
                .find_refresh_token(&hash(&token))
                .await
                .expect("lookup")
        }
    };
    let sealed = find(rt1.clone()).await.expect("rt1 row");
    let blob = sealed
        .successor_response
        .expect("sealed while the window lasts");
    assert!(
        !blob.windows(rt2.len()).any(|w| w == rt2.as_bytes()),
        "the successor is never stored in the clear"
    );

    let purge = |now: time::OffsetDateTime| {
        let store = std::sync::Arc::clone(&t.app.store);
        async move {
            let cutoffs = portcullis::storage::PurgeCutoffs {
                now,
                ended_before: now - time::Duration::days(1),
                throttle_before: now - time::Duration::minutes(15),
                audit_before: None,
            };
            while store.purge_expired(&cutoffs, 100).await.expect("purge") > 0 {}
        }
    };
    t.app.clock.advance(time::Duration::seconds(11));
    purge(t.app.clock.now()).await;
    let wiped = find(rt1.clone())
        .await
        .expect("rt1 row is kept for reuse detection");
    assert!(wiped.successor_response.is_none() && wiped.successor_until.is_none());

    t.app.clock.advance(time::Duration::days(31));
    purge(t.app.clock.now()).await;
    assert!(find(rt1).await.is_none());
    assert!(find(rt2).await.is_none());
}

#[tokio::test]
async fn the_cli_sessions_revoke_ends_every_family_of_the_user() {
    let t = setup().await;
    let online = t.tokens("openid").await;
    let offline = t.tokens("openid offline_access").await;
    let out = crate::cli::portcullis(
        &t.app.db.url,
        &["sessions", "revoke", "--user", "alice"],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for tokens in [&online, &offline] {
        t.assert_refresh_refused(&s(tokens, "refresh_token")).await;
        assert_eq!(
            t.userinfo(&s(tokens, "access_token")).await,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn offline_access_is_ignored_for_clients_not_allowed_it() {
    // OpenID Connect Core §11: the request goes ahead without offline access.
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let secret = app
        .register_client(Registration {
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            ..web_app(true)
        })
        .await
        .1
        .expect("secret");
    let p = pkce();
    let c = code(&app, &app.client, &p, &[("scope", "openid offline_access")]).await;
    let body: Value = exchange_web(&app, &secret, &c, &p.verifier)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["scope"], "openid");
    // The refresh token is bound to the session: it dies at sign-out.
    let csrf = app.account_csrf(&app.client).await;
    app.post_form(&app.client, "/logout/confirm", &[("csrf_token", &csrf)])
        .await;
    assert_oauth_error(
        refresh_as(
            &app,
            "web-app",
            Some(&secret),
            &s(&body, "refresh_token"),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn a_retry_must_be_the_same_request_and_a_bad_scope_reveals_nothing() {
    let t = setup().await;
    let rt1 = s(&t.tokens("openid profile").await, "refresh_token");
    // A request bound to fail answers the same before and after rotation: no probing.
    let before = t.refresh(&rt1, &[("scope", "openid nope")]).await;
    assert_oauth_error(before, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let second: Value = t.refresh(&rt1, &[]).await.json().await.expect("JSON");
    let after = t.refresh(&rt1, &[("scope", "openid nope")]).await;
    assert_oauth_error(after, StatusCode::BAD_REQUEST, "invalid_scope").await;
    // Inside the window, only the identical request is a retry: another scope is reuse.
    let different = t.refresh(&rt1, &[("scope", "openid")]).await;
    assert_oauth_error(different, StatusCode::BAD_REQUEST, "invalid_grant").await;
    t.assert_refresh_refused(&s(&second, "refresh_token")).await;
    assert_eq!(t.app.audit("refresh.reuse_detected").await.len(), 2);
}

#[tokio::test]
async fn replaying_a_code_revokes_the_refresh_family_it_produced() {
    let t = setup().await;
    let p = pkce();
    let c = code(
        &t.app,
        &t.app.client,
        &p,
        &[("scope", "openid offline_access")],
    )
    .await;
    let first: Value = exchange_web(&t.app, &t.secret, &c, &p.verifier)
        .await
        .json()
        .await
        .expect("JSON");
    let replay = exchange_web(&t.app, &t.secret, &c, &p.verifier).await;
    assert_oauth_error(replay, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // RFC 6749 §4.1.2: the tokens issued for the code are revoked, the refresh token too.
    t.assert_refresh_refused(&s(&first, "refresh_token")).await;
    assert_eq!(
        t.userinfo(&s(&first, "access_token")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_refresh_keeps_its_browser_session_alive_writing_at_most_once_per_touch_interval() {
    use portcullis::clock::Clock as _;
    // session.idle_timeout 1 h, touch_interval 1 min (the defaults).
    let t = setup().await;
    let tokens = t.tokens("openid profile").await;
    let user = t
        .app
        .store
        .find_user(&portcullis::domain::user::Username::parse("alice").expect("name"))
        .await
        .expect("user")
        .expect("alice")
        .0;
    let idle_expiry = || async {
        let now = t.app.clock.now();
        t.app
            .store
            .list_sessions(user.id, now)
            .await
            .expect("sessions")
            .first()
            .map(|s| s.idle_expires_at)
            .expect("a live session")
    };
    let signed_in = idle_expiry().await;

    // 20 s later: the expiry would move by less than the touch interval; nothing written.
    t.app.clock.advance(time::Duration::seconds(20));
    let r = t.refresh(&s(&tokens, "refresh_token"), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rt = s(&r.json::<Value>().await.expect("JSON"), "refresh_token");
    assert_eq!(idle_expiry().await, signed_in);

    // 50 min later (70 min of idle time since the sign-in would have ended the session
    // without the refreshes): the refresh is activity, the expiry moves.
    t.app.clock.advance(time::Duration::minutes(50));
    let r = t.refresh(&rt, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rt = s(&r.json::<Value>().await.expect("JSON"), "refresh_token");
    let moved = idle_expiry().await;
    assert_eq!(moved, t.app.clock.now() + time::Duration::hours(1));
    t.app.clock.advance(time::Duration::minutes(20));
    assert_eq!(t.refresh(&rt, &[]).await.status(), StatusCode::OK);
    assert!(idle_expiry().await > signed_in + time::Duration::minutes(20));
}
