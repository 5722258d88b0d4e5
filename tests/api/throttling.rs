//! Brute-force throttling: per account in the database, per IP in memory.

use reqwest::StatusCode;
use time::Duration;

use crate::helpers::{PASSWORD, spawn_app_with};

fn strict(s: &mut portcullis::config::Settings) {
    s.login.max_failures = 3;
    s.login.lockout_base = std::time::Duration::from_secs(60);
    s.login.lockout_max = std::time::Duration::from_secs(600);
    s.login.ip_max_failures = 1000;
}

#[tokio::test]
async fn throttling_kicks_in_after_the_configured_failures_and_survives_a_restart() {
    let app = spawn_app_with(strict).await;
    app.create_user("alice", PASSWORD).await;

    for attempt in 1..=2 {
        let response = app.login(&app.client, "alice", "wrong").await;
        assert_eq!(response.status(), StatusCode::OK, "attempt {attempt}");
    }
    let third = app.login(&app.client, "alice", "wrong").await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()["retry-after"], "60");

    // Locked: even the right password is not checked.
    let right = app.login(&app.client, "alice", PASSWORD).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(right.headers().contains_key("retry-after"));

    // The counter lives in the database: a restarted server still refuses.
    let app = app.restart().await;
    let after_restart = app.login(&app.client, "alice", PASSWORD).await;
    assert_eq!(after_restart.status(), StatusCode::TOO_MANY_REQUESTS);

    app.clock.advance(Duration::seconds(61));
    app.login_ok(&app.client, "alice", PASSWORD).await;

    let throttled = app.audit("login.throttled").await;
    let reasons: Vec<&str> = throttled
        .iter()
        .filter_map(|r| r.details["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().all(|r| *r == "account_locked"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.len(),
        3,
        "the lockout itself and two refused attempts"
    );
}

#[tokio::test]
async fn lockouts_double_with_further_failures() {
    let app = spawn_app_with(strict).await;
    app.create_user("alice", PASSWORD).await;
    for _ in 0..3 {
        app.login(&app.client, "alice", "wrong").await;
    }
    app.clock.advance(Duration::seconds(61));
    let fourth = app.login(&app.client, "alice", "wrong").await;
    assert_eq!(fourth.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(fourth.headers()["retry-after"], "120");
}

#[tokio::test]
async fn unknown_accounts_are_throttled_exactly_like_real_ones() {
    let app = spawn_app_with(strict).await;
    for _ in 0..2 {
        assert_eq!(
            app.login(&app.client, "nobody", "wrong").await.status(),
            StatusCode::OK
        );
    }
    let third = app.login(&app.client, "nobody", "wrong").await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()["retry-after"], "60");
}

#[tokio::test]
async fn a_success_resets_the_failure_count() {
    let app = spawn_app_with(strict).await;
    app.create_user("alice", PASSWORD).await;
    for _ in 0..2 {
        app.login(&app.client, "alice", "wrong").await;
    }
    app.login_ok(&app.new_browser(), "alice", PASSWORD).await;
    for _ in 0..2 {
        assert_eq!(
            app.login(&app.client, "alice", "wrong").await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn one_address_failing_against_many_accounts_is_limited() {
    let app = spawn_app_with(|s| {
        s.login.ip_max_failures = 4;
        s.login.ip_window = std::time::Duration::from_secs(300);
    })
    .await;
    app.create_user("alice", PASSWORD).await;
    for i in 0..4 {
        let response = app.login(&app.client, &format!("user{i}"), "wrong").await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    let blocked = app.login(&app.client, "alice", PASSWORD).await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.headers()["retry-after"], "300");
    let rows = app.audit("login.throttled").await;
    assert_eq!(rows[0].details["reason"], "ip_limit");

    app.clock.advance(Duration::seconds(301));
    app.login_ok(&app.client, "alice", PASSWORD).await;
}
