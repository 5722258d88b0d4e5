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

#[tokio::test]
async fn a_burst_of_concurrent_guesses_cannot_outrun_the_lockout() {
    let app = spawn_app_with(strict).await;
    app.create_user("alice", PASSWORD).await;
    let form = app.login_form(&app.client).await;

    let mut guesses = Vec::new();
    for i in 0..12 {
        let client = app.client.clone();
        let url = app.url("/login");
        let form = form.clone();
        guesses.push(tokio::spawn(async move {
            let guess = format!("guess {i}");
            client
                .post(url)
                .form(&[
                    ("tx", form.tx.as_str()),
                    ("csrf_token", &form.csrf_token),
                    ("username", "alice"),
                    ("password", &guess),
                ])
                .send()
                .await
                .expect("POST")
                .status()
        }));
    }
    let mut refused = 0;
    for guess in guesses {
        if guess.await.expect("task") == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }

    // Only max_failures (3) passwords were ever checked; every other guess was refused.
    assert_eq!(app.audit("login.failure").await.len(), 3);
    assert_eq!(
        refused,
        12 - 2,
        "two plain failures, then the locking one and the refused"
    );
}

#[tokio::test]
async fn lockouts_keep_doubling_instead_of_starting_over() {
    let app = spawn_app_with(|s| {
        strict(s);
        s.login.lockout_max = std::time::Duration::from_secs(240);
        s.login.failure_window = std::time::Duration::from_secs(240);
    })
    .await;
    app.create_user("alice", PASSWORD).await;
    for _ in 0..3 {
        app.login(&app.client, "alice", "wrong").await;
    }
    for expected in ["120", "240", "240", "240"] {
        // Wait out the current lock (at most 4 minutes), then fail once more.
        app.clock.advance(Duration::seconds(241));
        let response = app.login(&app.client, "alice", "wrong").await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], expected);
    }
}

#[tokio::test]
async fn opening_sign_in_forms_is_limited_per_address() {
    let app = spawn_app_with(|s| s.login.forms_per_ip_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(
            app.get(&app.new_browser(), "/login").await.status(),
            StatusCode::OK
        );
    }
    let refused = app.get(&app.new_browser(), "/login").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    app.clock.advance(Duration::seconds(61));
    assert_eq!(
        app.get(&app.new_browser(), "/login").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited_not_the_proxy() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
        s.login.ip_max_failures = 2;
    })
    .await;
    app.create_user("alice", PASSWORD).await;
    let from = |client: &reqwest::Client, forwarded: &str| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().expect("header"));
        let _ = client;
        headers
    };
    // The attacker (198.51.100.9) writes garbage of its own into the header; the proxy
    // appends the real address.
    let attacker = app.new_browser();
    for _ in 0..2 {
        let form = app.login_form(&attacker).await;
        let response = attacker
            .post(app.url("/login"))
            .headers(from(&attacker, "garbage, 198.51.100.9"))
            .form(&[
                ("tx", form.tx.as_str()),
                ("csrf_token", &form.csrf_token),
                ("username", "alice"),
                ("password", "wrong"),
            ])
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let form = app.login_form(&attacker).await;
    let blocked = attacker
        .post(app.url("/login"))
        .headers(from(&attacker, "other-garbage, 198.51.100.9"))
        .form(&[
            ("tx", form.tx.as_str()),
            ("csrf_token", &form.csrf_token),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);

    // Another user behind the same proxy is not affected.
    let neighbour = app.new_browser();
    let form = app.login_form(&neighbour).await;
    let ok = neighbour
        .post(app.url("/login"))
        .headers(from(&neighbour, "203.0.113.20"))
        .form(&[
            ("tx", form.tx.as_str()),
            ("csrf_token", &form.csrf_token),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let failures = app.audit("login.failure").await;
    assert!(
        failures
            .iter()
            .all(|r| r.ip.as_deref() == Some("198.51.100.9")),
        "{failures:?}"
    );
}
