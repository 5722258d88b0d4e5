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

/// Every encoding of the unsalted SHA-256 of the case-folded name: what a dictionary
/// attack on a leaked table or audit export would look for.
fn unsalted_encodings(name: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(name.trim().to_lowercase().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        hex.clone(),
        hex.to_uppercase(),
        STANDARD.encode(digest),
        STANDARD_NO_PAD.encode(digest),
        URL_SAFE.encode(digest),
        URL_SAFE_NO_PAD.encode(digest),
    ]
}

/// A database connection of the test's own, for reading tables as stored.
async fn throttle_keys(app: &crate::helpers::TestApp) -> Vec<String> {
    let sql = "select throttle_key from login_throttles";
    if app.db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&app.db.url)
            .await
            .expect("sqlite");
        let keys = sqlx::query_scalar(sql)
            .fetch_all(&pool)
            .await
            .expect("keys");
        pool.close().await;
        keys
    } else {
        let pool = sqlx::PgPool::connect(&app.db.url).await.expect("postgres");
        let keys = sqlx::query_scalar(sql)
            .fetch_all(&pool)
            .await
            .expect("keys");
        pool.close().await;
        keys
    }
}

#[tokio::test]
async fn a_name_typed_at_sign_in_is_never_stored_or_served_as_a_recoverable_hash() {
    use crate::client_credentials::cc_request;
    use portcullis::clients::Registration;

    let app = spawn_app_with(strict).await;
    let alice = app.create_user("alice", PASSWORD).await;
    let typed = "Correct Horse Battery Staple";
    for _ in 0..2 {
        let response = app.login(&app.client, typed, "wrong").await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Lockout still works under the keyed counter, whatever the case typed.
    let third = app.login(&app.client, &typed.to_lowercase(), "wrong").await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()["retry-after"], "60");
    let refused = app.login(&app.client, typed, "wrong").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let response = app.login(&app.client, "ALICE", "wrong").await;
    assert_eq!(response.status(), StatusCode::OK);

    let (_, secret) = app
        .register_client(Registration::admin("Ops".into(), Some("ops".into())))
        .await;
    let response = cc_request(&app, "ops", &secret.expect("secret"), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("json");
    let token = body["access_token"].as_str().expect("token");
    let listing = reqwest::Client::new()
        .get(app.url("/admin/v1/audit-events?limit=100"))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin");
    assert_eq!(listing.status(), StatusCode::OK);
    let listing = listing.text().await.expect("body");

    let keys = throttle_keys(&app).await;
    assert_eq!(
        keys.len(),
        2,
        "one counter for the typed name, one for alice"
    );
    let mut stored = keys.join("\n");
    for kind in ["login.failure", "login.throttled"] {
        for row in app.audit(kind).await {
            stored.push_str(&serde_json::to_string(&row.details).expect("json"));
        }
    }
    for needle in unsalted_encodings(typed)
        .into_iter()
        .chain(unsalted_encodings("alice"))
    {
        assert!(!stored.contains(&needle), "{needle} stored: {stored}");
        assert!(!listing.contains(&needle), "{needle} served: {listing}");
    }

    // An unknown name leaves no trace of its text; a known user is named.
    let failures = app.audit("login.failure").await;
    assert_eq!(failures.len(), 4);
    for row in &failures {
        assert!(row.details.get("account").is_none(), "{:?}", row.details);
    }
    let unknown: Vec<_> = failures.iter().filter(|r| r.user_id.is_none()).collect();
    assert_eq!(unknown.len(), 3);
    for row in unknown {
        // Spaces make it no valid username: refused as such, still counted.
        assert_eq!(row.details["reason"], "invalid_input");
        assert!(row.details.get("username").is_none(), "{:?}", row.details);
    }
    let known = failures
        .iter()
        .find(|r| r.user_id == Some(alice.id))
        .expect("alice's failure");
    assert_eq!(known.details["reason"], "bad_password");
    assert_eq!(known.details["username"], "alice");
}

/// Migration 0007 on a database from before it: counters keyed by the unsalted hash are
/// dropped and the hash leaves every audit row, the rest of each row untouched.
#[tokio::test]
async fn migration_0007_scrubs_unsalted_name_hashes() {
    use std::borrow::Cow;

    let db = crate::helpers::TestDatabase::create().await;
    let sqlite = db.url.starts_with("sqlite:");
    let dir = format!(
        "{}/migrations/{}",
        env!("CARGO_MANIFEST_DIR"),
        if sqlite { "sqlite" } else { "postgres" }
    );
    let path = std::path::Path::new(&dir);
    let all = sqlx::migrate::Migrator::new(path)
        .await
        .expect("migrations");
    let mut before = sqlx::migrate::Migrator::new(path)
        .await
        .expect("migrations");
    before.migrations = Cow::Owned(
        all.migrations
            .iter()
            .filter(|m| m.version < 7)
            .cloned()
            .collect(),
    );
    let hash = unsalted_encodings("correct horse battery staple").remove(0);
    let old = serde_json::json!({"reason": "unknown_user", "account": hash, "failures": 2});
    let other = serde_json::json!({"reason": "ip_limit"});
    let insert_audit = "insert into audit_events (at, kind, outcome, details) \
                        values ($1, 'login.failure', 'failure', $2)";
    let insert_throttle = "insert into login_throttles (throttle_key, failures, last_failure_at) \
                           values ($1, 2, $2)";
    let details: Vec<String>;
    let throttles: i64;
    macro_rules! scenario {
        ($pool:expr, $ts:expr, $json:expr, $text:expr) => {{
            let pool = $pool;
            before.run(&pool).await.expect("0001-0007");
            let now = time::OffsetDateTime::now_utc();
            for d in [&old, &other] {
                sqlx::query(insert_audit)
                    .bind($ts(now))
                    .bind($json(d))
                    .execute(&pool)
                    .await
                    .expect("insert audit");
            }
            sqlx::query(insert_throttle)
                .bind(&hash)
                .bind($ts(now))
                .execute(&pool)
                .await
                .expect("insert throttle");
            all.run(&pool).await.expect("0007");
            details = sqlx::query_scalar(&format!(
                "select {} from audit_events order by audit_event_id",
                $text
            ))
            .fetch_all(&pool)
            .await
            .expect("audit");
            throttles = sqlx::query_scalar("select count(*) from login_throttles")
                .fetch_one(&pool)
                .await
                .expect("count");
            pool.close().await;
        }};
    }
    if sqlite {
        let options = db
            .url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .expect("url")
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("sqlite");
        scenario!(
            pool,
            |t: time::OffsetDateTime| t.unix_timestamp(),
            |d: &serde_json::Value| d.to_string(),
            "details"
        );
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
        scenario!(
            pool,
            |t: time::OffsetDateTime| t,
            |d: &serde_json::Value| sqlx::types::Json(d.clone()),
            "details::text"
        );
    }
    let details: Vec<serde_json::Value> = details
        .iter()
        .map(|d| serde_json::from_str(d).expect("json"))
        .collect();
    assert_eq!(
        details,
        vec![
            serde_json::json!({"reason": "unknown_user", "failures": 2}),
            other.clone(),
        ]
    );
    assert_eq!(throttles, 0);
}

/// Posts each (browser, form) sign-in at once; returns the statuses in order.
async fn sign_in_all_at_once(
    app: &crate::helpers::TestApp,
    attempts: Vec<(reqwest::Client, crate::helpers::LoginForm)>,
    username: &str,
    password: &str,
) -> Vec<StatusCode> {
    let mut tasks = Vec::new();
    for (client, form) in attempts {
        let url = app.url("/login");
        let (username, password) = (username.to_owned(), password.to_owned());
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .form(&[
                    ("tx", form.tx.as_str()),
                    ("csrf_token", &form.csrf_token),
                    ("username", &username),
                    ("password", &password),
                ])
                .send()
                .await
                .expect("POST /login")
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    statuses
}

async fn fresh_forms(
    app: &crate::helpers::TestApp,
    n: usize,
) -> Vec<(reqwest::Client, crate::helpers::LoginForm)> {
    let mut forms = Vec::new();
    for _ in 0..n {
        let browser = app.new_browser();
        let form = app.login_form(&browser).await;
        forms.push((browser, form));
    }
    forms
}

// Issue 10 item 6: eight correct sign-ins to one account at once used to lock it (every
// attempt was counted before its password was checked).
#[tokio::test]
async fn simultaneous_correct_sign_ins_never_lock_the_account() {
    let app = spawn_app_with(strict).await;
    app.create_user("alice", PASSWORD).await;
    let forms = fresh_forms(&app, 8).await;

    let statuses = sign_in_all_at_once(&app, forms, "alice", PASSWORD).await;

    assert!(
        statuses.iter().all(|s| *s == StatusCode::SEE_OTHER),
        "every correct sign-in succeeds: {statuses:?}"
    );
    assert!(app.audit("login.throttled").await.is_empty());
    assert!(app.audit("login.failure").await.is_empty());
    assert_eq!(app.audit("login.success").await.len(), 8);
}

// Issue 10 item 6: a sign-in refused because password hashing is saturated (429, nothing
// was checked) is not a failed password and must not count towards a lockout.
#[tokio::test]
async fn sign_ins_refused_by_a_busy_password_pool_do_not_count_as_failures() {
    let app = spawn_app_with(|s| {
        strict(s);
        // One verification at a time, no queueing, and slow enough to overlap.
        s.password.max_concurrent = 1;
        s.password.queue_timeout = std::time::Duration::ZERO;
        s.password.memory_kib = 32 * 1024;
        s.password.iterations = 3;
        s.password.parallelism = 1;
    })
    .await;
    app.create_user("alice", PASSWORD).await;

    let mut busy = 0;
    for _round in 0..3 {
        let forms = fresh_forms(&app, 6).await;
        let statuses = sign_in_all_at_once(&app, forms, "alice", PASSWORD).await;
        for status in statuses {
            match status {
                StatusCode::SEE_OTHER => {}
                StatusCode::TOO_MANY_REQUESTS => busy += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert!(busy > 0, "the pool was saturated at least once");

    // Nothing was locked, nothing was audited as a failure or a lockout, and the next
    // sign-in with the right password goes through.
    let reasons: Vec<String> = app
        .audit("login.throttled")
        .await
        .iter()
        .filter_map(|r| r.details["reason"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !reasons.iter().any(|r| r == "account_locked"),
        "{reasons:?}"
    );
    assert!(app.audit("login.failure").await.is_empty());
    app.login_ok(&app.new_browser(), "alice", PASSWORD).await;
}

// The lease rules of the store itself (issue 10 item 6): attempts in flight hold the
// budget but are not failures; each lease ends once, by its id, and lapses on its own;
// after a lock, one attempt at a time.
#[tokio::test]
async fn the_failure_budget_is_leased_to_attempts_in_flight_and_leases_lapse() {
    use portcullis::domain::throttle::ThrottlePolicy;
    use portcullis::storage::Reservation;

    let app = crate::helpers::spawn_app().await;
    let store = &app.store;
    let policy = ThrottlePolicy {
        max_failures: 2,
        failure_window: Duration::minutes(15),
        lockout_base: Duration::minutes(1),
        lockout_max: Duration::minutes(10),
        attempt_lease: Duration::seconds(30),
    };
    let lease = policy.attempt_lease;
    let t0 = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("ns");
    let reserve = |at| store.reserve_login_attempt("k", at, lease, &policy);
    let granted = |r: Reservation| match r {
        Reservation::Granted(id) => id,
        other => panic!("expected a lease, got {other:?}"),
    };

    let a = granted(reserve(t0).await.expect("1"));
    let b = granted(reserve(t0).await.expect("2"));
    assert_ne!(a, b);
    // Two checks in flight hold the whole budget: the third waits, nobody is locked.
    assert_eq!(reserve(t0).await.expect("3"), Reservation::Busy);
    // One is given back (its check never ran): room again. Giving it back twice frees
    // nothing more.
    store.release_login_attempt(a).await.expect("release");
    store.release_login_attempt(a).await.expect("release again");
    let c = granted(reserve(t0).await.expect("4"));
    assert_eq!(reserve(t0).await.expect("5"), Reservation::Busy);
    // Each lease lapses on its own, whatever was granted after it.
    let t1 = t0 + Duration::seconds(20);
    store.release_login_attempt(c).await.expect("release c");
    let d = granted(reserve(t1).await.expect("6"));
    let t2 = t0 + Duration::seconds(31);
    // b lapsed at t0 + 30 s; d lives until t1 + 30 s.
    let e = granted(reserve(t2).await.expect("7"));
    assert_eq!(reserve(t2).await.expect("8"), Reservation::Busy);
    // A verified failure counts even if its lease had lapsed (b), and ends only its own
    // lease: d and e still hold the budget, so with one failure there is no room.
    let first = store
        .record_login_failure("k", b, t2, &policy)
        .await
        .expect("f1");
    assert_eq!((first.failures, first.locked_until), (1, None));
    assert_eq!(reserve(t2).await.expect("9"), Reservation::Busy);
    store.release_login_attempt(d).await.expect("release d");
    let second = store
        .record_login_failure("k", e, t2, &policy)
        .await
        .expect("f2");
    let until = t2 + Duration::minutes(1);
    assert_eq!((second.failures, second.locked_until), (2, Some(until)));
    assert_eq!(
        reserve(t2).await.expect("10"),
        Reservation::Locked { until }
    );
    // After the lock: one attempt at a time, and its failure doubles the lock.
    let t3 = until + Duration::seconds(1);
    let f = granted(reserve(t3).await.expect("11"));
    assert_eq!(reserve(t3).await.expect("12"), Reservation::Busy);
    let third = store
        .record_login_failure("k", f, t3, &policy)
        .await
        .expect("f3");
    assert_eq!(third.locked_until, Some(t3 + Duration::minutes(2)));
}
