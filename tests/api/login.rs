//! Signing in: cookie flags, indistinguishable failures, CSRF and Origin checks,
//! redirects, fixation.

use reqwest::StatusCode;

use crate::helpers::{
    LoginForm, PASSWORD, cookie_value, hidden_field, session_cookie_name, set_cookie, spawn_app,
    spawn_app_with,
};

#[tokio::test]
async fn login_success_sets_a_session_cookie_with_exactly_the_required_flags() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;

    let response = app.login(&app.client, "alice", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/account");
    let cookie = set_cookie(&response, "portcullis_session").expect("session cookie");
    let mut attributes: Vec<String> = cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_owned())
        .collect();
    attributes.sort();
    // 8 h absolute lifetime by default.
    assert_eq!(
        attributes,
        [
            "HttpOnly",
            "Max-Age=28800",
            "Path=/",
            "SameSite=Lax",
            "Secure"
        ]
    );
    assert_eq!(cookie_value(&cookie).len(), 43, "256 bits, base64url");
}

#[tokio::test]
async fn after_login_the_account_page_shows_the_user_and_the_session() {
    let app = spawn_app().await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    app.login_ok(&app.client, "alice", PASSWORD).await;

    let response = app.get(&app.client, "/account").await;

    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.expect("body");
    assert!(html.contains("Alice Example"));
    assert!(html.contains("alice@example.com"));
    assert!(html.contains("Chrome on Linux"), "device of the session");
    assert!(html.contains("127.0.0.1"), "IP of the session");
    assert!(html.contains("This device"));
}

#[tokio::test]
async fn usernames_are_matched_case_insensitively() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.login_ok(&app.client, "  ALICE ", PASSWORD).await;
    assert!(app.is_signed_in(&app.client).await);
}

#[tokio::test]
async fn https_issuers_get_host_prefixed_cookies_and_hsts() {
    let app = spawn_app_with(|s| s.issuer = "https://127.0.0.1:1".into()).await;
    app.create_user("alice", PASSWORD).await;

    let page = app.get(&app.client, "/login").await;
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let binding = set_cookie(&page, "__Host-portcullis_login").expect("binding cookie");
    assert!(!binding.to_ascii_lowercase().contains("domain="));
    let html = page.text().await.expect("body");
    let form = LoginForm {
        tx: hidden_field(&html, "tx").expect("tx"),
        csrf_token: hidden_field(&html, "csrf_token").expect("csrf"),
    };
    let response = app
        .submit_login(&app.client, &form, "alice", PASSWORD)
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookie(&response, session_cookie_name(&app)).expect("__Host- session cookie");
    assert!(cookie.contains("Secure") && cookie.contains("Path=/"));
    assert!(!cookie.to_ascii_lowercase().contains("domain="));
}

/// The response to a failed sign-in with the per-request values blanked out.
async fn failed_login_fingerprint(
    response: reqwest::Response,
) -> (StatusCode, Vec<String>, String) {
    let status = response.status();
    let mut headers: Vec<String> = response
        .headers()
        .keys()
        .filter(|k| !matches!(k.as_str(), "date" | "x-request-id" | "content-length"))
        .map(|k| k.to_string())
        .collect();
    headers.sort();
    let mut html = response.text().await.expect("body");
    for field in ["tx", "csrf_token"] {
        if let Some(v) = hidden_field(&html, field) {
            html = html.replace(&v, "X");
        }
    }
    (status, headers, html)
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_indistinguishable() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.create_user("bob", PASSWORD).await;

    let form = app.login_form(&app.client).await;
    let wrong_password = app
        .submit_login(&app.client, &form, "alice", "not the password")
        .await;
    let form = app.login_form(&app.client).await;
    let unknown_user = app
        .submit_login(&app.client, &form, "alicia", "not the password")
        .await;

    let wrong = failed_login_fingerprint(wrong_password).await;
    let unknown = failed_login_fingerprint(unknown_user).await;
    assert_eq!(wrong.0, StatusCode::OK);
    assert!(wrong.2.contains("Incorrect username or password."));
    // Same status, same headers, same page except for the username typed in.
    assert_eq!(wrong.0, unknown.0);
    assert_eq!(wrong.1, unknown.1);
    assert_eq!(
        wrong.2.replace("alice", "USER"),
        unknown.2.replace("alicia", "USER")
    );

    let failures = app.audit("login.failure").await;
    let reasons: Vec<&str> = failures
        .iter()
        .filter_map(|r| r.details["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"bad_password") && reasons.contains(&"unknown_user"),
        "{reasons:?}"
    );
    assert!(app.audit("login.success").await.is_empty());
}

#[tokio::test]
async fn disabled_users_cannot_sign_in_and_see_the_generic_message() {
    let app = spawn_app().await;
    let user = app.create_user("alice", PASSWORD).await;
    let audit = portcullis::audit::AuditEvent::new(
        time::OffsetDateTime::now_utc(),
        portcullis::audit::AuditKind::UserDisabled,
        portcullis::audit::Outcome::Success,
        &portcullis::audit::Actor::cli(),
    );
    app.store
        .set_user_disabled(user.id, true, time::OffsetDateTime::now_utc(), &audit)
        .await
        .expect("disable");

    let response = app.login(&app.client, "alice", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("Incorrect username or password.")
    );
    let failures = app.audit("login.failure").await;
    assert_eq!(failures[0].details["reason"], "disabled");
}

#[tokio::test]
async fn forged_or_cross_site_posts_are_refused_and_create_no_session() {
    let app = spawn_app().await;
    let user = app.create_user("alice", PASSWORD).await;

    struct Case {
        name: &'static str,
        origin: Option<&'static str>,
        fetch_site: Option<&'static str>,
        csrf: Option<&'static str>,
        expected: StatusCode,
    }
    let cases = [
        Case {
            name: "missing csrf token",
            origin: None,
            fetch_site: None,
            csrf: None,
            expected: StatusCode::BAD_REQUEST,
        },
        Case {
            name: "altered csrf token",
            origin: None,
            fetch_site: None,
            csrf: Some("altered"),
            expected: StatusCode::FORBIDDEN,
        },
        Case {
            name: "empty csrf token",
            origin: None,
            fetch_site: None,
            csrf: Some(""),
            expected: StatusCode::FORBIDDEN,
        },
        Case {
            name: "foreign origin",
            origin: Some("https://evil.example"),
            fetch_site: None,
            csrf: None,
            expected: StatusCode::FORBIDDEN,
        },
        Case {
            name: "opaque origin",
            origin: Some("null"),
            fetch_site: None,
            csrf: None,
            expected: StatusCode::FORBIDDEN,
        },
        Case {
            name: "cross-site fetch",
            origin: None,
            fetch_site: Some("cross-site"),
            csrf: None,
            expected: StatusCode::FORBIDDEN,
        },
        Case {
            name: "same-site (sibling) fetch",
            origin: None,
            fetch_site: Some("same-site"),
            csrf: None,
            expected: StatusCode::FORBIDDEN,
        },
    ];
    for case in cases {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()
            .expect("client");
        let form = app.login_form(&client).await;
        let real_csrf = form.csrf_token.clone();
        let mut fields = vec![
            ("tx", form.tx.as_str()),
            ("username", "alice"),
            ("password", PASSWORD),
        ];
        match (case.name, case.csrf) {
            ("missing csrf token", _) => {}
            (_, Some(token)) => fields.push(("csrf_token", token)),
            (_, None) => fields.push(("csrf_token", real_csrf.as_str())),
        }
        let mut request = client.post(app.url("/login")).form(&fields);
        if let Some(origin) = case.origin {
            let origin = if origin == "ORIGIN" {
                app.address.clone()
            } else {
                origin.to_owned()
            };
            request = request.header("origin", origin);
        }
        if let Some(site) = case.fetch_site {
            request = request.header("sec-fetch-site", site);
        }
        let response = request.send().await.expect("POST");
        assert_eq!(response.status(), case.expected, "{}", case.name);
        assert!(
            set_cookie(&response, "portcullis_session").is_none(),
            "{}",
            case.name
        );
        assert!(!app.is_signed_in(&client).await, "{}", case.name);
    }
    assert_eq!(app.session_count(&user).await, 0);
    assert!(app.audit("login.success").await.is_empty());
}

#[tokio::test]
async fn a_form_served_to_another_browser_does_not_work() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let attacker = app.new_browser();
    let form = app.login_form(&attacker).await;

    // Login CSRF: the victim's browser submits the attacker's form.
    let victim = app.new_browser();
    let _ = app.get(&victim, "/login").await;
    let response = app.submit_login(&victim, &form, "alice", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&response, "portcullis_session").is_none());
}

#[tokio::test]
async fn a_sign_in_form_works_only_once() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let form = app.login_form(&app.client).await;
    let first = app
        .submit_login(&app.client, &form, "alice", PASSWORD)
        .await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);

    let replay = app
        .submit_login(&app.new_browser(), &form, "alice", PASSWORD)
        .await;
    assert_eq!(replay.status(), StatusCode::FORBIDDEN);
    let again = app
        .submit_login(&app.client, &form, "alice", PASSWORD)
        .await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.audit("login.success").await.len(), 1);
}

#[tokio::test]
async fn sign_in_forms_expire() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let form = app.login_form(&app.client).await;
    app.clock.advance(time::Duration::minutes(16));

    let response = app
        .submit_login(&app.client, &form, "alice", PASSWORD)
        .await;

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.expect("body").contains("expired"));
}

#[tokio::test]
async fn login_never_redirects_to_a_target_taken_from_the_request() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let query = "/login?return_to=https://evil.example&next=//evil.example&redirect_uri=https://evil.example";
    let html = app
        .get(&app.client, query)
        .await
        .text()
        .await
        .expect("body");
    let form = LoginForm {
        tx: hidden_field(&html, "tx").expect("tx"),
        csrf_token: hidden_field(&html, "csrf_token").expect("csrf"),
    };

    let response = app
        .submit_login(&app.client, &form, "alice", PASSWORD)
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/account");
}

#[tokio::test]
async fn a_session_id_planted_before_login_is_never_reused() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = app.get(&client, "/login").await;
    let binding = cookie_value(&set_cookie(&page, "portcullis_login").expect("binding cookie"));
    let html = page.text().await.expect("body");
    let planted = "A".repeat(43);

    let response = client
        .post(app.url("/login"))
        .header(
            "cookie",
            format!("portcullis_login={binding}; portcullis_session={planted}"),
        )
        .form(&[
            ("tx", hidden_field(&html, "tx").expect("tx").as_str()),
            (
                "csrf_token",
                &hidden_field(&html, "csrf_token").expect("csrf"),
            ),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("POST");

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let issued = cookie_value(&set_cookie(&response, "portcullis_session").expect("cookie"));
    assert_ne!(issued, planted);
    let with_planted = client
        .get(app.url("/account"))
        .header("cookie", format!("portcullis_session={planted}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(with_planted.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn signing_in_again_replaces_the_previous_session_of_that_browser() {
    let app = spawn_app().await;
    let user = app.create_user("alice", PASSWORD).await;
    let first = app.login_ok(&app.client, "alice", PASSWORD).await;

    // A signed-in browser that opens /login goes to its account instead...
    let page = app.get(&app.client, "/login").await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    // ...but a form it already had still signs in, with a fresh session.
    let other = app.new_browser();
    let form = app.login_form(&other).await;
    let second = app.submit_login(&other, &form, "alice", PASSWORD).await;
    assert_eq!(second.status(), StatusCode::SEE_OTHER);
    let second = cookie_value(&set_cookie(&second, "portcullis_session").expect("cookie"));
    assert_ne!(first, second);
    assert_eq!(app.session_count(&user).await, 2);
}

#[tokio::test]
async fn empty_fields_are_reported_next_to_the_field_without_counting_as_a_failure() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let response = app.login(&app.client, "", "").await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.expect("body");
    assert!(html.contains("Enter your username."));
    assert!(html.contains("Enter your password."));
    assert!(html.contains("aria-invalid=\"true\""));
    assert!(app.audit("login.failure").await.is_empty());
}

#[tokio::test]
async fn successful_logins_are_audited_with_the_session() {
    let app = spawn_app().await;
    let user = app.create_user("alice", PASSWORD).await;
    app.login_ok(&app.client, "alice", PASSWORD).await;

    let rows = app.audit("login.success").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_id, Some(user.id));
    assert_eq!(rows[0].outcome, "success");
    assert_eq!(rows[0].ip.as_deref(), Some("127.0.0.1"));
    assert!(rows[0].session_id.is_some());
    assert_eq!(rows[0].request_id.as_deref().map(str::len), Some(32));
}

#[tokio::test]
async fn a_same_origin_post_with_an_opaque_origin_is_accepted() {
    // What Chromium sends for its own form posts under Referrer-Policy: no-referrer.
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let form = app.login_form(&app.client).await;
    let response = app
        .client
        .post(app.url("/login"))
        .header("origin", "null")
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("tx", form.tx.as_str()),
            ("csrf_token", &form.csrf_token),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}
