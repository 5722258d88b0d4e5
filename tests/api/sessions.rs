//! Browser sessions: idle and absolute expiry, sign-out of one, all, and the current.

use reqwest::StatusCode;
use time::Duration;

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_idle_session_expires() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.login_ok(&app.client, "alice", PASSWORD).await;

    app.clock.advance(Duration::minutes(59));
    assert!(
        app.is_signed_in(&app.client).await,
        "activity within the idle timeout"
    );
    app.clock.advance(Duration::minutes(59));
    assert!(
        app.is_signed_in(&app.client).await,
        "the last request renewed the idle timeout"
    );
    app.clock.advance(Duration::minutes(61));

    let response = app.get(&app.client, "/account").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login");
}

#[tokio::test]
async fn activity_never_extends_a_session_past_its_absolute_lifetime() {
    let app = spawn_app_with(|s| {
        s.session.idle_timeout = std::time::Duration::from_secs(3600);
        s.session.absolute_lifetime = std::time::Duration::from_secs(3 * 3600);
    })
    .await;
    app.create_user("alice", PASSWORD).await;
    app.login_ok(&app.client, "alice", PASSWORD).await;

    for _ in 0..5 {
        app.clock.advance(Duration::minutes(30));
        assert!(app.is_signed_in(&app.client).await);
    }
    // 2 h 30 min in: active, yet only 30 minutes of absolute lifetime are left.
    app.clock.advance(Duration::minutes(31));
    assert!(!app.is_signed_in(&app.client).await);
}

#[tokio::test]
async fn logout_makes_the_old_cookie_worthless() {
    let app = spawn_app().await;
    let user = app.create_user("alice", PASSWORD).await;
    let cookie = app.login_ok(&app.client, "alice", PASSWORD).await;
    let csrf = app.account_csrf(&app.client).await;

    let response = app
        .post_form(&app.client, "/logout/confirm", &[("csrf_token", &csrf)])
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login?signed_out=1");
    let cleared =
        crate::helpers::set_cookie(&response, "portcullis_session").expect("clearing cookie");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // Replaying the old cookie by hand does not bring the session back.
    let replay = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url("/account"))
        .header("cookie", format!("portcullis_session={cookie}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.session_count(&user).await, 0);
    let rows = app.audit("logout").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_id, Some(user.id));
}

#[tokio::test]
async fn logout_requires_the_session_csrf_token() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.login_ok(&app.client, "alice", PASSWORD).await;

    let response = app
        .post_form(&app.client, "/logout/confirm", &[("csrf_token", "forged")])
        .await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(app.is_signed_in(&app.client).await);
    assert!(app.audit("logout").await.is_empty());
}

#[tokio::test]
async fn sign_out_of_all_sessions_ends_every_session_of_the_user() {
    let app = spawn_app().await;
    let alice = app.create_user("alice", PASSWORD).await;
    app.create_user("bob", PASSWORD).await;
    let laptop = app.new_browser();
    let phone = app.new_browser();
    let bobs = app.new_browser();
    let laptop_cookie = app.login_ok(&laptop, "alice", PASSWORD).await;
    app.login_ok(&phone, "alice", PASSWORD).await;
    app.login_ok(&bobs, "bob", PASSWORD).await;
    assert_eq!(app.session_count(&alice).await, 2);
    let csrf = app.account_csrf(&laptop).await;

    let response = app
        .post_form(
            &laptop,
            "/account/sessions/revoke-all",
            &[("csrf_token", &csrf)],
        )
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(!app.is_signed_in(&laptop).await);
    assert!(!app.is_signed_in(&phone).await);
    assert!(app.is_signed_in(&bobs).await, "other users are untouched");
    let replay = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url("/account"))
        .header("cookie", format!("portcullis_session={laptop_cookie}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    let rows = app.audit("session.revoked").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].details["sessions"], 2);
}

#[tokio::test]
async fn signing_out_another_session_keeps_this_one() {
    let app = spawn_app().await;
    let alice = app.create_user("alice", PASSWORD).await;
    let laptop = app.new_browser();
    let phone = app.new_browser();
    app.login_ok(&laptop, "alice", PASSWORD).await;
    app.login_ok(&phone, "alice", PASSWORD).await;
    assert_eq!(app.session_count(&alice).await, 2);
    // Newest first: the phone signed in last.
    let phone_session = app.audit("login.success").await[0]
        .session_id
        .expect("session id");
    let csrf = app.account_csrf(&laptop).await;

    let response = app
        .post_form(
            &laptop,
            &format!("/account/sessions/{phone_session}/revoke"),
            &[("csrf_token", &csrf)],
        )
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/account");
    assert!(app.is_signed_in(&laptop).await);
    assert!(!app.is_signed_in(&phone).await);
}

#[tokio::test]
async fn a_user_cannot_sign_out_someone_elses_session() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let bob = app.create_user("bob", PASSWORD).await;
    let alices = app.new_browser();
    let bobs = app.new_browser();
    app.login_ok(&alices, "alice", PASSWORD).await;
    app.login_ok(&bobs, "bob", PASSWORD).await;
    let bob_session = app
        .store
        .list_sessions(bob.id, portcullis::clock::Clock::now(&app.clock))
        .await
        .expect("sessions")[0]
        .id;
    let csrf = app.account_csrf(&alices).await;

    let response = app
        .post_form(
            &alices,
            &format!("/account/sessions/{bob_session}/revoke"),
            &[("csrf_token", &csrf)],
        )
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(app.is_signed_in(&bobs).await);
    assert!(app.audit("session.revoked").await.is_empty());
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions() {
    let app = spawn_app().await;
    let alice = app.create_user("alice", PASSWORD).await;
    app.login_ok(&app.client, "alice", PASSWORD).await;
    let now = time::OffsetDateTime::now_utc();
    let audit = portcullis::audit::AuditEvent::new(
        now,
        portcullis::audit::AuditKind::UserDisabled,
        portcullis::audit::Outcome::Success,
        &portcullis::audit::Actor::cli(),
    );
    app.store
        .set_user_disabled(alice.id, true, now, &audit)
        .await
        .expect("disable");
    assert!(!app.is_signed_in(&app.client).await);
}

#[tokio::test]
async fn an_unauthenticated_visitor_is_sent_to_the_login_page() {
    let app = spawn_app().await;
    for path in ["/account", "/"] {
        let response = app.get(&app.client, path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
    }
    let response = app.get(&app.client, "/account").await;
    assert_eq!(response.headers()["location"], "/login");
}

#[tokio::test]
async fn an_account_form_from_another_site_is_refused_before_anything_else() {
    let app = spawn_app().await;
    // Without a session, a same-site post is sent to sign in; one from another site is
    // refused outright, session or not.
    let anonymous = app
        .post_form(
            &app.client,
            "/account/sessions/revoke-all",
            &[("csrf_token", "x")],
        )
        .await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()["location"], "/login");
    for path in [
        "/account/sessions/revoke-all",
        "/account/sessions/00000000-0000-0000-0000-000000000000/revoke",
    ] {
        let foreign = app
            .client
            .post(app.url(path))
            .header("origin", "https://evil.example")
            .form(&[("csrf_token", "x")])
            .send()
            .await
            .expect("POST");
        assert_eq!(foreign.status(), StatusCode::FORBIDDEN, "{path}");
    }
}
