//! The account page's two-step verification section over HTTP: setting up an
//! authenticator app (QR code, key, first code), recovery codes shown once and
//! regenerated, removing an authenticator, and the CSRF token on every form.

use portcullis::clock::Clock as _;
use portcullis::domain::mfa::{normalize_recovery_code, recovery_code_hash, totp};
use portcullis::domain::user::User;
use reqwest::{Response, StatusCode};
use time::Duration;

use crate::helpers::{PASSWORD, TestApp, hidden_field, spawn_app};

/// A signed-in browser of a new user, with its account page's CSRF token.
async fn signed_in(app: &TestApp) -> (User, String) {
    let user = app.create_user("alice", PASSWORD).await;
    app.login_ok(&app.client, "alice", PASSWORD).await;
    let csrf = app.account_csrf(&app.client).await;
    (user, csrf)
}

async fn account_page(app: &TestApp, path: &str) -> String {
    let response = app.get(&app.client, path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.text().await.expect("body")
}

/// The setup page of a new pending authenticator.
struct Setup {
    html: String,
    factor_id: String,
    /// The key as shown (grouped in fours).
    shown_secret: String,
    secret: Vec<u8>,
}

fn read_setup(html: String) -> Setup {
    let marker = "id=\"totp-secret\">";
    let start = html.find(marker).expect("the key on the setup page") + marker.len();
    let end = html[start..].find("</code>").expect("end of the key") + start;
    let shown_secret = html[start..end].to_owned();
    let compact: String = shown_secret.split_whitespace().collect();
    let secret = totp_rs::Secret::try_from_base32(&compact)
        .expect("a base32 key")
        .as_bytes()
        .to_vec();
    let factor_id = hidden_field(&html, "factor_id").expect("factor_id");
    Setup {
        html,
        factor_id,
        shown_secret,
        secret,
    }
}

async fn begin_setup(app: &TestApp, csrf: &str) -> Setup {
    let response = app
        .post_form(&app.client, "/account/totp", &[("csrf_token", csrf)])
        .await;
    assert_eq!(response.status(), StatusCode::OK, "POST /account/totp");
    read_setup(response.text().await.expect("body"))
}

/// The code an authenticator app shows now (the server's mock clock).
fn code_now(app: &TestApp, secret: &[u8]) -> String {
    let unix = u64::try_from(app.clock.now().unix_timestamp()).expect("after 1970");
    totp(secret, "x", "y")
        .expect("totp")
        .generate(unix)
        .to_string()
}

async fn confirm(app: &TestApp, csrf: &str, setup: &Setup, code: &str, name: &str) -> Response {
    app.post_form(
        &app.client,
        "/account/totp/confirm",
        &[
            ("csrf_token", csrf),
            ("factor_id", &setup.factor_id),
            ("name", name),
            ("code", code),
        ],
    )
    .await
}

/// The codes of a recovery codes page, in order.
fn recovery_codes(html: &str) -> Vec<String> {
    let start = html
        .find("<ol class=\"recovery-codes\"")
        .expect("the recovery code list");
    let end = html[start..].find("</ol>").expect("end of the list") + start;
    html[start..end]
        .split("<code>")
        .skip(1)
        .filter_map(|part| part.split_once("</code>").map(|(code, _)| code.to_owned()))
        .collect()
}

/// Sets up an authenticator named `name` end to end; returns the codes page's codes.
async fn enroll(app: &TestApp, csrf: &str, name: &str) -> (Setup, Response) {
    let setup = begin_setup(app, csrf).await;
    let code = code_now(app, &setup.secret);
    let response = confirm(app, csrf, &setup, &code, name).await;
    (setup, response)
}

/// Once the account has a factor, a password-only session changes its factors only after
/// a step-up: a security form sends it to the code page, a code brings it back.
async fn step_up(app: &TestApp, csrf: &str, secret: &[u8]) {
    let response = app
        .post_form(
            &app.client,
            "/account/recovery-codes",
            &[("csrf_token", csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(location.starts_with("/login?tx="), "{location}");
    assert!(app.audit("recovery_codes.generated").await.is_empty());
    let html = account_page(app, &location).await;
    assert!(html.contains("action=\"/login/second-factor\""), "{html}");
    assert!(!html.contains("name=\"password\""));
    // A later time step than the one the setup used.
    app.clock.advance(Duration::seconds(30));
    let code = code_now(app, secret);
    let response = app
        .post_form(
            &app.client,
            "/login/second-factor",
            &[
                ("tx", &hidden_field(&html, "tx").expect("tx")),
                (
                    "csrf_token",
                    &hidden_field(&html, "csrf_token").expect("csrf"),
                ),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/account");
}

#[tokio::test]
async fn an_authenticator_app_is_set_up_end_to_end() {
    let app = spawn_app().await;
    let (user, csrf) = signed_in(&app).await;

    let before = account_page(&app, "/account").await;
    assert!(before.contains("Two-step verification"), "{before}");
    assert!(before.contains("No authenticator app is set up."));
    assert!(before.contains("action=\"/account/totp\""));
    assert!(before.contains("Set up an authenticator app"));
    assert!(
        !before.contains("Generate new recovery codes"),
        "no recovery codes without a factor"
    );

    let setup = begin_setup(&app, &csrf).await;
    let html = &setup.html;
    assert!(html.contains("<svg"), "the QR code is inline SVG");
    assert!(!html.contains("<?xml"), "no XML prolog inside HTML");
    assert!(
        html.contains("otpauth://totp/"),
        "a link for apps on this device"
    );
    let groups: Vec<&str> = setup.shown_secret.split(' ').collect();
    assert_eq!(
        groups.len(),
        8,
        "a 160-bit key in groups of four: {groups:?}"
    );
    assert!(groups.iter().all(|g| g.len() == 4), "{groups:?}");
    assert_eq!(setup.secret.len(), 20);
    for attribute in [
        "autocomplete=\"one-time-code\"",
        "inputmode=\"numeric\"",
        "pattern=\"[0-9 ]*\"",
        "<label class=\"label\" for=\"code\">",
        "action=\"/account/totp/confirm\"",
        "name=\"name\" type=\"text\" value=\"Authenticator app\"",
    ] {
        assert!(html.contains(attribute), "the setup page has {attribute}");
    }
    assert_eq!(hidden_field(html, "csrf_token").as_deref(), Some(&*csrf));
    assert!(
        app.store
            .list_factors(user.id)
            .await
            .expect("factors")
            .iter()
            .all(|f| !f.confirmed),
        "nothing is on until the first code"
    );

    let code = code_now(&app, &setup.secret);
    let response = confirm(&app, &csrf, &setup, &code, "Work phone").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let html = response.text().await.expect("body");
    let codes = recovery_codes(&html);
    assert_eq!(codes.len(), 10, "{html}");
    for c in &codes {
        assert!(normalize_recovery_code(c).is_some(), "{c}");
    }
    assert!(html.contains("shown only this once"), "{html}");
    assert!(html.contains("Each code works once"));
    assert!(html.contains("href=\"/account\">Done</a>"));

    let factors = app.store.list_factors(user.id).await.expect("factors");
    assert_eq!(factors.len(), 1);
    assert!(factors[0].confirmed);
    assert_eq!(factors[0].name, "Work phone");
    assert_eq!(factors[0].id.to_string(), setup.factor_id);

    let after = account_page(&app, "/account").await;
    assert!(after.contains("Work phone"), "{after}");
    assert!(after.contains("10 of 10 left"), "{after}");
    assert!(after.contains(&format!(
        "action=\"/account/factors/{}/remove\"",
        setup.factor_id
    )));
    assert!(after.contains("Generate new recovery codes"));
    assert!(after.contains("Set up another authenticator app"));
    assert!(
        !after.contains("security-alert"),
        "no recovery code was used"
    );

    let audit = app.audit("factor.enrolled").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].user_id, Some(user.id));
    assert_eq!(audit[0].details["factor_id"], setup.factor_id.as_str());
    assert_eq!(audit[0].details["recovery_codes_generated"], true);
}

#[tokio::test]
async fn a_wrong_or_malformed_code_shows_the_setup_again_and_confirms_nothing() {
    let app = spawn_app().await;
    let (user, csrf) = signed_in(&app).await;
    let setup = begin_setup(&app, &csrf).await;
    let right = code_now(&app, &setup.secret);
    // Each digit changed: not this step's code (nor, but for a one-in-a-million chance,
    // a neighbour's).
    let wrong: String = right
        .chars()
        .map(|c| {
            let d = c.to_digit(10).expect("digit");
            char::from_digit((d + 5) % 10, 10).expect("digit")
        })
        .collect();

    for (code, message) in [
        (wrong.as_str(), "That code is not right"),
        (
            "12a456",
            "Enter the 6-digit code from your authenticator app.",
        ),
        ("", "Enter the 6-digit code from your authenticator app."),
    ] {
        let response = confirm(&app, &csrf, &setup, code, "My phone").await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "code {code:?}"
        );
        let again = read_setup(response.text().await.expect("body"));
        assert!(again.html.contains(message), "{code:?}: {}", again.html);
        assert!(again.html.contains("id=\"code-error\""));
        assert!(again.html.contains("aria-invalid=\"true\""));
        assert_eq!(again.factor_id, setup.factor_id, "the same setup");
        assert_eq!(again.shown_secret, setup.shown_secret, "the same key");
        assert!(
            again.html.contains("value=\"My phone\""),
            "the name typed is kept"
        );
        assert!(again.html.contains("autocomplete=\"one-time-code\""));
    }
    let factors = app.store.list_factors(user.id).await.expect("factors");
    assert_eq!(factors.len(), 1);
    assert!(!factors[0].confirmed, "still pending");
    assert!(app.audit("factor.enrolled").await.is_empty());

    // The right code still works afterwards.
    let response = confirm(&app, &csrf, &setup, &right, "My phone").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        recovery_codes(&response.text().await.expect("body")).len(),
        10
    );
}

#[tokio::test]
async fn a_stale_or_unknown_setup_says_it_has_expired() {
    let app = spawn_app().await;
    let (_, csrf) = signed_in(&app).await;
    let first = begin_setup(&app, &csrf).await;
    let second = begin_setup(&app, &csrf).await;
    assert_ne!(first.factor_id, second.factor_id);
    assert_ne!(first.shown_secret, second.shown_secret);

    // A newer setup replaced the first.
    let code = code_now(&app, &first.secret);
    let response = confirm(&app, &csrf, &first, &code, "").await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let html = response.text().await.expect("body");
    assert!(
        html.contains("This setup has expired; start again."),
        "{html}"
    );
    assert!(
        html.contains("action=\"/account/totp\""),
        "a way to start again"
    );
    assert!(!html.contains("totp-secret"));

    for factor_id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        let bogus = Setup {
            factor_id: factor_id.to_owned(),
            ..read_setup(second.html.clone())
        };
        let response = confirm(&app, &csrf, &bogus, "123456", "").await;
        assert_eq!(response.status(), StatusCode::CONFLICT, "{factor_id}");
        assert!(
            response
                .text()
                .await
                .expect("body")
                .contains("This setup has expired; start again.")
        );
    }

    // Once confirmed, the same form cannot confirm it again.
    let code = code_now(&app, &second.secret);
    let response = confirm(&app, &csrf, &second, &code, "").await;
    assert_eq!(response.status(), StatusCode::OK);
    step_up(&app, &csrf, &second.secret).await;
    app.clock.advance(Duration::seconds(30));
    let code = code_now(&app, &second.secret);
    let response = confirm(&app, &csrf, &second, &code, "").await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn another_authenticator_is_added_without_new_recovery_codes() {
    let app = spawn_app().await;
    let (user, csrf) = signed_in(&app).await;
    let (phone, first) = enroll(&app, &csrf, "Phone").await;
    assert_eq!(first.status(), StatusCode::OK);

    step_up(&app, &csrf, &phone.secret).await;
    let (_, second) = enroll(&app, &csrf, "   ").await;
    assert_eq!(second.status(), StatusCode::SEE_OTHER);
    assert_eq!(second.headers()["location"], "/account?notice=totp-added");
    let page = account_page(&app, "/account?notice=totp-added").await;
    assert!(page.contains("Your authenticator app was added."), "{page}");
    assert!(page.contains("Phone"));
    assert!(
        page.contains("Authenticator app"),
        "a blank name is the default"
    );
    assert!(page.contains("10 of 10 left"));
    assert_eq!(app.store.list_factors(user.id).await.expect("f").len(), 2);
    let audit = app.audit("factor.enrolled").await;
    assert_eq!(audit.len(), 2);
    assert!(
        audit
            .iter()
            .any(|r| r.details["recovery_codes_generated"] == false)
    );

    // Only our fixed notices are shown; the query's text never is.
    let page = account_page(&app, "/account?notice=%3Cb%3Epwned%3C%2Fb%3E").await;
    assert!(!page.contains("pwned"));
    assert!(!page.contains("banner-info"));
}

#[tokio::test]
async fn new_recovery_codes_replace_the_old_ones_and_a_used_one_is_flagged() {
    let app = spawn_app().await;
    let (user, csrf) = signed_in(&app).await;

    // Without an authenticator there is nothing to recover.
    let response = app
        .post_form(
            &app.client,
            "/account/recovery-codes",
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let (phone, response) = enroll(&app, &csrf, "Phone").await;
    let old = recovery_codes(&response.text().await.expect("body"));
    assert_eq!(old.len(), 10);
    step_up(&app, &csrf, &phone.secret).await;

    // A recovery code is used (as a sign-in would): the account page warns.
    let hash =
        |code: &str| recovery_code_hash(user.id, &normalize_recovery_code(code).expect("a code"));
    assert!(
        app.store
            .use_recovery_code(user.id, &hash(&old[0]), app.clock.now(), None)
            .await
            .expect("use")
            .is_some()
    );
    let page = account_page(&app, "/account").await;
    assert!(page.contains("9 of 10 left"), "{page}");
    assert!(page.contains("security-alert"), "{page}");
    assert!(page.contains("A recovery code was used to sign in to your account"));
    assert!(page.contains("generate new recovery codes"));

    // Without the token: refused, nothing replaced.
    let refused = app
        .post_form(
            &app.client,
            "/account/recovery-codes",
            &[("csrf_token", "x")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(app.audit("recovery_codes.generated").await.is_empty());

    let response = app
        .post_form(
            &app.client,
            "/account/recovery-codes",
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.expect("body");
    assert!(html.contains("Your old recovery codes no longer work."));
    let new = recovery_codes(&html);
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !old.contains(c)), "a new set");

    let page = account_page(&app, "/account").await;
    assert!(page.contains("10 of 10 left"), "{page}");
    assert!(!page.contains("security-alert"), "the new set is unused");
    assert!(
        app.store
            .use_recovery_code(user.id, &hash(&old[1]), app.clock.now(), None)
            .await
            .expect("use")
            .is_none(),
        "an old code no longer works"
    );
    assert!(
        app.store
            .use_recovery_code(user.id, &hash(&new[1]), app.clock.now(), None)
            .await
            .expect("use")
            .is_some()
    );
    let audit = app.audit("recovery_codes.generated").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].user_id, Some(user.id));
}

#[tokio::test]
async fn removing_an_authenticator_needs_the_csrf_token() {
    let app = spawn_app().await;
    let (user, csrf) = signed_in(&app).await;
    let (setup, _) = enroll(&app, &csrf, "Phone").await;
    step_up(&app, &csrf, &setup.secret).await;
    let path = format!("/account/factors/{}/remove", setup.factor_id);

    let no_token = app.post_form(&app.client, &path, &[]).await;
    assert!(no_token.status().is_client_error(), "{}", no_token.status());
    let wrong_token = app
        .post_form(&app.client, &path, &[("csrf_token", "nope")])
        .await;
    assert_eq!(wrong_token.status(), StatusCode::FORBIDDEN);
    let cross_site = app
        .client
        .post(app.url(&path))
        .header("origin", "https://evil.example")
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let other = app.new_browser();
    let signed_out = app
        .post_form(&other, &path, &[("csrf_token", csrf.as_str())])
        .await;
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_out.headers()["location"], "/login");
    assert_eq!(app.store.list_factors(user.id).await.expect("f").len(), 1);
    assert!(app.audit("factor.removed").await.is_empty());

    for bad in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        let response = app
            .post_form(
                &app.client,
                &format!("/account/factors/{bad}/remove"),
                &[("csrf_token", &csrf)],
            )
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{bad}");
    }

    let removed = app
        .post_form(&app.client, &path, &[("csrf_token", &csrf)])
        .await;
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        removed.headers()["location"],
        "/account?notice=factor-removed"
    );
    assert!(app.store.list_factors(user.id).await.expect("f").is_empty());
    let page = account_page(&app, "/account?notice=factor-removed").await;
    assert!(page.contains("The authenticator app was removed"), "{page}");
    assert!(page.contains("No authenticator app is set up."));
    assert!(!page.contains("Generate new recovery codes"));
    assert_eq!(
        app.store
            .recovery_codes(user.id)
            .await
            .expect("rc")
            .remaining,
        0,
        "the last factor takes the recovery codes with it"
    );
    let audit = app.audit("factor.removed").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["factor_id"], setup.factor_id.as_str());

    let again = app
        .post_form(&app.client, &path, &[("csrf_token", &csrf)])
        .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_security_forms_need_a_session_and_the_token() {
    let app = spawn_app().await;
    let (user, csrf) = signed_in(&app).await;
    let anonymous = app.new_browser();
    for path in [
        "/account/totp",
        "/account/totp/confirm",
        "/account/recovery-codes",
    ] {
        let response = app
            .post_form(
                &anonymous,
                path,
                &[
                    ("csrf_token", csrf.as_str()),
                    ("factor_id", "00000000-0000-0000-0000-000000000000"),
                    ("code", "123456"),
                ],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()["location"], "/login", "{path}");
        let get = app.get(&app.client, path).await;
        assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED, "GET {path}");
    }
    let refused = app
        .post_form(&app.client, "/account/totp", &[("csrf_token", "x")])
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(app.store.list_factors(user.id).await.expect("f").is_empty());

    let setup = begin_setup(&app, &csrf).await;
    let code = code_now(&app, &setup.secret);
    let refused = confirm(&app, "x", &setup, &code, "").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        app.store
            .list_factors(user.id)
            .await
            .expect("f")
            .iter()
            .all(|f| !f.confirmed)
    );
}

#[tokio::test]
async fn a_password_only_session_must_step_up_before_it_adds_a_passkey() {
    let app = spawn_app().await;
    let (user, csrf) = signed_in(&app).await;
    enroll(&app, &csrf, "Phone").await;
    let response = app
        .post_form(
            &app.client,
            "/account/passkeys/options",
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["step_up"]
            .as_str()
            .expect("step_up")
            .starts_with("/login?tx="),
        "{body}"
    );
    let factors = app.store.list_factors(user.id).await.expect("factors");
    assert_eq!(factors.len(), 1, "nothing added");
}
