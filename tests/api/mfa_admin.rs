//! Administering second factors: `portcullis users mfa …` and
//! `/admin/v1/users/{user_id}/factors`, over the same `auth::Factors` functions. An
//! enrolled secret yields codes the sign-in check accepts; every change is audited; the
//! database holds the secret sealed, never in the clear; bad input gets its status.

use std::process::{Command, Output};

use portcullis::audit::{AuditRecord, AuditSearch};
use portcullis::auth::SecondFactorUsed;
use portcullis::domain::mfa::CodeRejection;
use portcullis::domain::user::User;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::admin::{Admin, assert_no_secrets, audit_by, problem};
use crate::helpers::{PASSWORD, TestApp, run_bounded, spawn_app};

/// Runs the CLI on the app's database with the server's master key.
fn portcullis(app: &TestApp, args: &[&str]) -> Output {
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env("PORTCULLIS__DATABASE__URL", &app.db.url)
            .env(
                "PORTCULLIS__KEYS__MASTER_KEY_FILE",
                &app.settings.keys.master_key_file,
            )
            .env("PORTCULLIS__KEYS__GENERATE_MASTER_KEY", "false")
            .env_remove("PORTCULLIS_MASTER_KEY")
            .env_remove("PORTCULLIS_ENV")
            .env_remove("RUST_LOG"),
        "",
    )
}

/// A successful `--json` command's output.
fn cli(app: &TestApp, args: &[&str]) -> Value {
    let out = portcullis(app, &[args, &["--json"]].concat());
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// A command that must fail; returns its stderr.
fn cli_fails(app: &TestApp, args: &[&str]) -> String {
    let out = portcullis(app, args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The current code of a base32 secret, as an authenticator app computes it.
fn code_now(secret: &str) -> String {
    let bytes = totp_rs::Secret::try_from_base32(secret).expect("base32 secret");
    let at = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).expect("time");
    portcullis::domain::mfa::totp(bytes.as_bytes(), "x", "y")
        .expect("totp")
        .generate(at)
        .to_string()
}

/// The sign-in check, as the server runs it.
async fn check(app: &TestApp, user: &User, typed: &str) -> Result<SecondFactorUsed, CodeRejection> {
    app.factors()
        .check(
            user.id,
            typed,
            OffsetDateTime::now_utc(),
            &portcullis::audit::Actor::cli(),
        )
        .await
        .expect("check")
}

/// An enrollment's JSON (CLI or admin API): exactly these fields, a 20-byte base32 secret
/// in an otpauth URI. Returns the factor id and the secret.
fn enrolled(value: &Value, username: &str) -> (Uuid, String) {
    let keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["factor_id", "otpauth_uri", "recovery_codes", "secret"],
        "{value}"
    );
    let id = Uuid::parse_str(value["factor_id"].as_str().expect("id")).expect("uuid");
    let secret = value["secret"].as_str().expect("secret").to_owned();
    let bytes = totp_rs::Secret::try_from_base32(&secret).expect("base32 secret");
    assert_eq!(bytes.as_bytes().len(), 20);
    let uri = value["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(uri.contains(username), "{uri}");
    (id, secret)
}

fn codes(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect()
}

/// `user_factors.encrypted_secret` and `recovery_codes.code_hash`, read with plain SQL.
async fn stored_blobs(app: &TestApp) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use sqlx::Connection;
    let secrets = "select encrypted_secret from user_factors";
    let hashes = "select code_hash from recovery_codes";
    if app.db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&app.db.url)
            .await
            .expect("sqlite");
        (
            sqlx::query_scalar(secrets)
                .fetch_all(&mut conn)
                .await
                .expect("secrets"),
            sqlx::query_scalar(hashes)
                .fetch_all(&mut conn)
                .await
                .expect("hashes"),
        )
    } else {
        let mut conn = sqlx::PgConnection::connect(&app.db.url)
            .await
            .expect("postgres");
        (
            sqlx::query_scalar(secrets)
                .fetch_all(&mut conn)
                .await
                .expect("secrets"),
            sqlx::query_scalar(hashes)
                .fetch_all(&mut conn)
                .await
                .expect("hashes"),
        )
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The rows of one audit kind about `user`, newest first.
async fn audited(app: &TestApp, kind: &str, user: &User) -> Vec<AuditRecord> {
    app.store
        .search_audit(&AuditSearch {
            kind: Some(kind.into()),
            user_id: Some(user.id),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("audit")
}

fn factors_path(user: &User) -> String {
    format!("/admin/v1/users/{}/factors", user.id)
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_command_line_enrolls_an_authenticator_whose_codes_are_accepted() {
    let app = spawn_app().await;
    let alice = app.create_user("alice", PASSWORD).await;

    let first = cli(
        &app,
        &[
            "users",
            "mfa",
            "enroll-totp",
            "--username",
            "alice",
            "--name",
            "Work phone",
        ],
    );
    let (factor, secret) = enrolled(&first, "alice");
    let recovery = codes(&first["recovery_codes"]);
    assert_eq!(recovery.len(), 10);

    // The code an authenticator app shows is accepted once.
    let code = code_now(&secret);
    assert_eq!(
        check(&app, &alice, &code).await,
        Ok(SecondFactorUsed::Totp { factor })
    );
    assert_eq!(
        check(&app, &alice, &code).await,
        Err(CodeRejection::Replayed)
    );
    // A recovery code works once too.
    assert_eq!(
        check(&app, &alice, &recovery[0]).await,
        Ok(SecondFactorUsed::RecoveryCode { remaining: 9 })
    );
    assert_eq!(
        check(&app, &alice, &recovery[0]).await,
        Err(CodeRejection::Wrong)
    );

    // A second factor leaves the recovery codes as they are.
    let second = cli(
        &app,
        &["users", "mfa", "enroll-totp", "--username", "alice"],
    );
    let (other, other_secret) = enrolled(&second, "alice");
    assert!(second["recovery_codes"].is_null());
    assert_ne!(other_secret, secret);

    let enrolled_rows = audited(&app, "factor.enrolled", &alice).await;
    assert_eq!(enrolled_rows.len(), 2);
    assert_eq!(enrolled_rows[0].details["factor_id"], other.to_string());
    assert_eq!(enrolled_rows[1].details["factor_id"], factor.to_string());
    assert_eq!(enrolled_rows[1].details["by_administrator"], true);
    assert_eq!(enrolled_rows[1].details["recovery_codes_generated"], true);
    assert_eq!(enrolled_rows[0].details["recovery_codes_generated"], false);
    assert_eq!(enrolled_rows[0].request_id.as_deref(), Some("cli"));
    assert!(enrolled_rows[0].actor_client_id.is_none());
    let rows = serde_json::to_string(&enrolled_rows).expect("JSON");
    assert!(!rows.contains(&secret) && !rows.contains(&recovery[1]));

    // Sealed at rest: neither the secret's bytes nor its base32 are in the database, and
    // recovery codes are stored as hashes.
    let (blobs, hashes) = stored_blobs(&app).await;
    assert_eq!(blobs.len(), 2);
    assert_eq!(hashes.len(), 10);
    for secret in [&secret, &other_secret] {
        let bytes = totp_rs::Secret::try_from_base32(secret).expect("base32");
        for blob in &blobs {
            assert!(
                blob.len() > bytes.as_bytes().len(),
                "sealed with nonce and tag"
            );
            assert!(!contains(blob, bytes.as_bytes()));
            assert!(!contains(blob, secret.as_bytes()));
        }
    }
    for hash in &hashes {
        for code in &recovery {
            assert!(!contains(hash, code.as_bytes()));
            assert!(!contains(hash, code.replace('-', "").as_bytes()));
        }
    }

    // The human-readable form shows the secret too.
    let out = portcullis(
        &app,
        &["users", "mfa", "enroll-totp", "--username", "alice"],
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Secret (base32): "), "{text}");
    assert!(text.contains("otpauth://totp/"), "{text}");
}

#[tokio::test]
async fn the_command_line_lists_removes_and_resets_factors() {
    let app = spawn_app().await;
    let alice = app.create_user("alice", PASSWORD).await;
    app.create_user("bob", PASSWORD).await;

    let empty = cli(&app, &["users", "mfa", "list", "--username", "alice"]);
    assert_eq!(
        empty,
        json!({ "factors": [], "recovery_codes_remaining": 0 })
    );
    let refused = cli_fails(
        &app,
        &["users", "mfa", "recovery-codes", "--username", "alice"],
    );
    assert!(refused.contains("no second factor"), "{refused}");

    let (phone, _) = enrolled(
        &cli(
            &app,
            &[
                "users",
                "mfa",
                "enroll-totp",
                "--username",
                "alice",
                "--name",
                "Phone",
            ],
        ),
        "alice",
    );
    let (tablet, tablet_secret) = enrolled(
        &cli(
            &app,
            &[
                "users",
                "mfa",
                "enroll-totp",
                "--username",
                "alice",
                "--name",
                "Tablet",
            ],
        ),
        "alice",
    );
    let listed = cli(&app, &["users", "mfa", "list", "--username", "alice"]);
    assert_no_secrets(&listed);
    assert_eq!(listed["recovery_codes_remaining"], 10);
    let factors = listed["factors"].as_array().expect("factors");
    assert_eq!(factors.len(), 2);
    let named = |id: Uuid| {
        factors
            .iter()
            .find(|f| f["factor_id"] == id.to_string())
            .expect("listed")
    };
    assert_eq!(named(phone)["name"], "Phone");
    assert_eq!(named(phone)["kind"], "totp");
    assert_eq!(named(tablet)["name"], "Tablet");
    let text = portcullis(&app, &["users", "mfa", "list", "--username", "alice"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&phone.to_string()) && text.contains("Tablet"),
        "{text}"
    );

    let regenerated = cli(
        &app,
        &["users", "mfa", "recovery-codes", "--username", "alice"],
    );
    let new_codes = codes(&regenerated["recovery_codes"]);
    assert_eq!(new_codes.len(), 10);
    assert_eq!(
        check(&app, &alice, &new_codes[3]).await,
        Ok(SecondFactorUsed::RecoveryCode { remaining: 9 })
    );
    assert_eq!(
        audited(&app, "recovery_codes.generated", &alice)
            .await
            .len(),
        1
    );

    let removed = cli(
        &app,
        &[
            "users",
            "mfa",
            "remove",
            "--username",
            "alice",
            "--factor-id",
            &phone.to_string(),
        ],
    );
    assert_eq!(removed["removed"], true);
    let again = cli_fails(
        &app,
        &[
            "users",
            "mfa",
            "remove",
            "--username",
            "alice",
            "--factor-id",
            &phone.to_string(),
        ],
    );
    assert!(again.contains("no such factor"), "{again}");
    // Not bob's to remove.
    let not_his = cli_fails(
        &app,
        &[
            "users",
            "mfa",
            "remove",
            "--username",
            "bob",
            "--factor-id",
            &tablet.to_string(),
        ],
    );
    assert!(not_his.contains("no such factor"), "{not_his}");
    let malformed = cli_fails(
        &app,
        &[
            "users",
            "mfa",
            "remove",
            "--username",
            "alice",
            "--factor-id",
            "not-a-uuid",
        ],
    );
    assert!(malformed.contains("--factor-id"), "{malformed}");
    let removed_rows = audited(&app, "factor.removed", &alice).await;
    assert_eq!(removed_rows.len(), 1);
    assert_eq!(removed_rows[0].details["factor_id"], phone.to_string());
    // The other factor still works.
    assert_eq!(
        check(&app, &alice, &code_now(&tablet_secret)).await,
        Ok(SecondFactorUsed::Totp { factor: tablet })
    );

    // A lost phone: everything goes.
    let reset = cli(&app, &["users", "mfa", "reset", "--username", "alice"]);
    assert_eq!(reset["removed"], 1);
    assert_eq!(
        cli(&app, &["users", "mfa", "list", "--username", "alice"]),
        json!({ "factors": [], "recovery_codes_remaining": 0 })
    );
    assert_eq!(
        check(&app, &alice, &new_codes[4]).await,
        Err(CodeRejection::Wrong)
    );
    let reset_rows = audited(&app, "factor.reset", &alice).await;
    assert_eq!(reset_rows.len(), 1);
    assert_eq!(reset_rows[0].details["removed"], 1);
    assert_eq!(reset_rows[0].request_id.as_deref(), Some("cli"));

    for args in [
        &["users", "mfa", "list", "--username", "nobody"][..],
        &["users", "mfa", "reset", "--username", "nobody"],
        &["users", "mfa", "enroll-totp", "--username", "nobody"],
        &["users", "mfa", "recovery-codes", "--username", "nobody"],
    ] {
        let stderr = cli_fails(&app, args);
        assert!(
            stderr.contains("no user named nobody"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn the_admin_api_enrolls_lists_removes_and_resets_factors() {
    let admin = Admin::new().await;
    let app = &admin.app;
    let alice = app.create_user("alice", PASSWORD).await;
    let path = factors_path(&alice);

    assert_eq!(
        admin.ok(Method::GET, &path, None).await,
        json!({ "factors": [], "recovery_codes_remaining": 0 })
    );
    let recovery_path = format!("/admin/v1/users/{}/recovery-codes", alice.id);
    problem(
        admin.send(Method::POST, &recovery_path, None).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    let response = admin
        .send(
            Method::POST,
            &format!("{path}/totp"),
            Some(json!({ "name": "Work phone" })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let first: Value = response.json().await.expect("JSON");
    let (factor, secret) = enrolled(&first, "alice");
    let recovery = codes(&first["recovery_codes"]);
    assert_eq!(recovery.len(), 10);
    assert_eq!(
        check(app, &alice, &code_now(&secret)).await,
        Ok(SecondFactorUsed::Totp { factor })
    );

    // Listed oldest first.
    app.clock.advance(time::Duration::seconds(1));
    let response = admin
        .send(Method::POST, &format!("{path}/totp"), Some(json!({})))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let second: Value = response.json().await.expect("JSON");
    let (other, _) = enrolled(&second, "alice");
    assert!(second["recovery_codes"].is_null());

    let listed = admin.ok(Method::GET, &path, None).await;
    assert_no_secrets(&listed);
    assert_eq!(listed["recovery_codes_remaining"], 10);
    let names: Vec<&str> = listed["factors"]
        .as_array()
        .expect("factors")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Work phone", "Authenticator app"]);
    assert_eq!(listed["factors"][0]["factor_id"], factor.to_string());
    assert!(listed["factors"][0]["last_used_at"].is_string());
    assert!(listed["factors"][1]["last_used_at"].is_null());

    let enrolled_rows = audit_by(app, "factor.enrolled").await;
    assert_eq!(enrolled_rows.len(), 2);
    assert_eq!(enrolled_rows[1].details["factor_id"], factor.to_string());
    assert_eq!(enrolled_rows[1].user_id, Some(alice.id));

    // New recovery codes replace the old ones.
    let response = admin.send(Method::POST, &recovery_path, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let regenerated: Value = response.json().await.expect("JSON");
    let new_codes = codes(&regenerated["recovery_codes"]);
    assert_eq!(new_codes.len(), 10);
    assert_eq!(
        check(app, &alice, &recovery[0]).await,
        Err(CodeRejection::Wrong)
    );
    assert_eq!(
        check(app, &alice, &new_codes[0]).await,
        Ok(SecondFactorUsed::RecoveryCode { remaining: 9 })
    );
    assert_eq!(
        admin.ok(Method::GET, &path, None).await["recovery_codes_remaining"],
        9
    );
    assert_eq!(audit_by(app, "recovery_codes.generated").await.len(), 1);

    // Remove one, then the rest.
    assert_eq!(
        admin
            .status(Method::DELETE, &format!("{path}/{factor}"), None)
            .await,
        StatusCode::NO_CONTENT
    );
    problem(
        admin
            .send(Method::DELETE, &format!("{path}/{factor}"), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let removed_rows = audit_by(app, "factor.removed").await;
    assert_eq!(removed_rows.len(), 1);
    assert_eq!(removed_rows[0].details["factor_id"], factor.to_string());
    let listed = admin.ok(Method::GET, &path, None).await;
    assert_eq!(listed["factors"][0]["factor_id"], other.to_string());
    assert_eq!(listed["factors"].as_array().map(Vec::len), Some(1));

    assert_eq!(
        admin.ok(Method::DELETE, &path, None).await,
        json!({ "removed": 1 })
    );
    assert_eq!(
        admin.ok(Method::GET, &path, None).await,
        json!({ "factors": [], "recovery_codes_remaining": 0 })
    );
    assert_eq!(
        check(app, &alice, &new_codes[1]).await,
        Err(CodeRejection::Wrong)
    );
    let reset_rows = audit_by(app, "factor.reset").await;
    assert_eq!(reset_rows.len(), 1);
    assert_eq!(reset_rows[0].user_id, Some(alice.id));
    assert_eq!(
        admin.ok(Method::DELETE, &path, None).await,
        json!({ "removed": 0 })
    );
}

#[tokio::test]
async fn bad_factor_requests_get_their_status_and_change_nothing() {
    let admin = Admin::new().await;
    let app = &admin.app;
    let alice = app.create_user("alice", PASSWORD).await;
    let bob = app.create_user("bob", PASSWORD).await;
    let (setup, _) = app
        .factors()
        .enroll_totp_for(
            &alice,
            None,
            OffsetDateTime::now_utc(),
            &portcullis::audit::Actor::cli(),
        )
        .await
        .expect("enroll");
    let alices = factors_path(&alice);
    let unknown = format!("/admin/v1/users/{}/factors", Uuid::new_v4());

    for (method, path, body) in [
        (Method::GET, unknown.clone(), None),
        (
            Method::GET,
            "/admin/v1/users/not-a-uuid/factors".into(),
            None,
        ),
        (Method::DELETE, unknown.clone(), None),
        (Method::POST, format!("{unknown}/totp"), Some(json!({}))),
        (
            Method::POST,
            "/admin/v1/users/not-a-uuid/factors/totp".into(),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/admin/v1/users/{}/recovery-codes", Uuid::new_v4()),
            None,
        ),
        (
            Method::DELETE,
            format!("{unknown}/{}", setup.factor_id),
            None,
        ),
        (Method::DELETE, format!("{alices}/not-a-uuid"), None),
        (Method::DELETE, format!("{alices}/{}", Uuid::new_v4()), None),
        // Alice's factor is not Bob's.
        (
            Method::DELETE,
            format!("{}/{}", factors_path(&bob), setup.factor_id),
            None,
        ),
    ] {
        let body = problem(
            admin.send(method.clone(), &path, body).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        assert!(
            body["detail"] == "no such user" || body["detail"] == "no such factor",
            "{method} {path}: {body}"
        );
    }

    // Unknown fields and bodies that are not JSON are refused as everywhere else.
    problem(
        admin
            .send(
                Method::POST,
                &format!("{alices}/totp"),
                Some(json!({ "name": "x", "secret": "JBSWY3DPEHPK3PXP" })),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    problem(
        admin
            .send(
                Method::POST,
                &format!("{alices}/totp"),
                Some(json!({ "name": 7 })),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    problem(
        admin
            .request(Method::POST, &format!("{alices}/totp"))
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .expect("POST"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // `totp` is the enrollment route, not a factor id.
    let response = admin
        .send(Method::DELETE, &format!("{alices}/totp"), None)
        .await;
    assert_eq!(response.headers()["allow"], "POST");
    problem(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let response = admin
        .send(Method::GET, &format!("{alices}/totp"), None)
        .await;
    assert_eq!(response.headers()["allow"], "POST");
    problem(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let response = admin
        .send(Method::PUT, &format!("{alices}/{}", setup.factor_id), None)
        .await;
    assert_eq!(response.headers()["allow"], "DELETE");

    // Nothing changed: Alice keeps her factor, and the admin client is in no audit row.
    let listed = admin.ok(Method::GET, &alices, None).await;
    assert_eq!(
        listed["factors"][0]["factor_id"],
        setup.factor_id.to_string()
    );
    assert_eq!(listed["factors"].as_array().map(Vec::len), Some(1));
    for kind in ["factor.removed", "factor.reset", "recovery_codes.generated"] {
        assert!(audit_by(app, kind).await.is_empty(), "{kind}");
    }
    assert!(audit_by(app, "factor.enrolled").await.is_empty());
}

#[tokio::test]
async fn require_mfa_set_on_the_command_line_shows_in_the_admin_api() {
    let admin = Admin::new().await;
    let app = &admin.app;
    let created = cli(
        app,
        &[
            "clients",
            "create",
            "--name",
            "Payroll",
            "--kind",
            "confidential",
            "--client-id",
            "payroll",
            "--redirect-uri",
            "https://payroll.example.com/cb",
            "--require-mfa",
        ],
    );
    assert_eq!(created["require_mfa"], true);
    let view = admin
        .ok(Method::GET, "/admin/v1/clients/payroll", None)
        .await;
    assert_eq!(view["require_mfa"], true, "{view}");

    cli(
        app,
        &[
            "clients",
            "update",
            "--client-id",
            "payroll",
            "--require-mfa",
            "false",
        ],
    );
    let view = admin
        .ok(Method::GET, "/admin/v1/clients/payroll", None)
        .await;
    assert_eq!(view["require_mfa"], false, "{view}");
    cli(
        app,
        &[
            "clients",
            "update",
            "--client-id",
            "payroll",
            "--require-mfa",
            "true",
        ],
    );
    let view = admin
        .ok(Method::GET, "/admin/v1/clients/payroll", None)
        .await;
    assert_eq!(view["require_mfa"], true, "{view}");
}
