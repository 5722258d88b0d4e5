//! The `portcullis` binary: user management over the same database, JSON output,
//! secrets from stdin, and configuration errors that name the key.

use std::process::{Command, Output};

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, spawn_app};

pub fn portcullis(db_url: &str, args: &[&str], stdin: &str) -> Output {
    crate::helpers::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env("PORTCULLIS__DATABASE__URL", db_url)
            .env_remove("PORTCULLIS_ENV")
            .env_remove("RUST_LOG"),
        stdin,
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn users_created_on_the_command_line_can_sign_in() {
    let app = spawn_app().await;
    let db = &app.db.url;

    let out = portcullis(
        db,
        &[
            "users",
            "create",
            "--username",
            "Carol",
            "--name",
            "Carol C",
            "--email",
            "carol@example.com",
            "--json",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value =
        serde_json::from_str(stdout(&out).trim()).expect("JSON output");
    assert_eq!(created["username"], "carol");
    assert_eq!(created["name"], "Carol C");
    assert!(
        created.get("password_hash").is_none(),
        "the hash is never printed"
    );
    assert!(!stdout(&out).contains(PASSWORD) && !stderr(&out).contains(PASSWORD));

    app.login_ok(&app.client, "carol", PASSWORD).await;
    assert_eq!(app.audit("user.created").await.len(), 1);
}

#[tokio::test]
async fn duplicate_usernames_and_short_passwords_are_refused() {
    let app = spawn_app().await;
    let db = &app.db.url;
    let first = portcullis(
        db,
        &["users", "create", "--username", "dave"],
        &format!("{PASSWORD}\n"),
    );
    assert!(first.status.success(), "{}", stderr(&first));

    let duplicate = portcullis(
        db,
        &["users", "create", "--username", "DAVE"],
        &format!("{PASSWORD}\n"),
    );
    assert!(!duplicate.status.success());
    assert!(
        stderr(&duplicate).contains("already exists"),
        "{}",
        stderr(&duplicate)
    );

    let short = portcullis(db, &["users", "create", "--username", "erin"], "short\n");
    assert!(!short.status.success());
    assert!(stderr(&short).contains("at least 8"), "{}", stderr(&short));

    let bad_name = portcullis(
        db,
        &["users", "create", "--username", "e rin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(!bad_name.status.success());
    assert!(
        stderr(&bad_name).contains("invalid --username"),
        "{}",
        stderr(&bad_name)
    );

    let list = portcullis(db, &["users", "list", "--json"], "");
    let users: serde_json::Value = serde_json::from_str(&stdout(&list)).expect("JSON list");
    assert_eq!(users.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn set_password_and_disable_take_effect_and_end_sessions() {
    let app = spawn_app().await;
    let db = app.db.url.clone();
    app.create_user("frank", PASSWORD).await;
    app.login_ok(&app.client, "frank", PASSWORD).await;

    let new_password = "an entirely new passphrase";
    let out = portcullis(
        &db,
        &["users", "set-password", "--username", "frank", "--json"],
        &format!("{new_password}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !app.is_signed_in(&app.client).await,
        "password change signs out sessions"
    );
    let old = app.login(&app.new_browser(), "frank", PASSWORD).await;
    assert!(
        old.text()
            .await
            .expect("body")
            .contains("Incorrect username or password.")
    );
    let browser = app.new_browser();
    app.login_ok(&browser, "frank", new_password).await;

    let out = portcullis(
        &db,
        &["users", "disable", "--username", "frank", "--json"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(result["disabled"], true);
    assert!(
        !app.is_signed_in(&browser).await,
        "disabling signs out sessions"
    );
    let refused = app.login(&app.new_browser(), "frank", new_password).await;
    assert_eq!(refused.status(), StatusCode::OK);

    let out = portcullis(&db, &["users", "enable", "--username", "frank"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    app.login_ok(&app.new_browser(), "frank", new_password)
        .await;
    assert_eq!(app.audit("user.disabled").await.len(), 1);
    assert_eq!(app.audit("user.password_changed").await.len(), 1);
}

#[tokio::test]
async fn sessions_revoke_signs_a_user_out_everywhere() {
    let app = spawn_app().await;
    app.create_user("gina", PASSWORD).await;
    app.login_ok(&app.client, "gina", PASSWORD).await;
    let out = portcullis(
        &app.db.url,
        &["sessions", "revoke", "--user", "gina", "--json"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(result["revoked_sessions"], 1);
    assert!(!app.is_signed_in(&app.client).await);
}

#[test]
fn migrate_prints_json_and_creates_the_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/nested/dir/portcullis.db", dir.path().display());
    let out = portcullis(&url, &["migrate", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"migrated":true}"#);
    assert!(dir.path().join("nested/dir/portcullis.db").exists());
}

#[test]
fn invalid_configuration_stops_the_server_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/p.db", dir.path().display());
    let cases = [
        (
            "PORTCULLIS__SESSION__IDLE_TIMEOUT",
            "forever",
            "session.idle_timeout",
        ),
        ("PORTCULLIS__ISSUER", "http://id.example.com", "issuer"),
        ("PORTCULLIS__ISSUER", "https://id.example.com?x=1", "issuer"),
        ("PORTCULLIS__LOGIN__MAX_FAILURES", "0", "login.max_failures"),
        ("PORTCULLIS__SESSION__IDLE_TIMEOT", "1h", "idle_timeot"),
        ("PORTCULLIS__DATABASE__URL", "mysql://x", "database.url"),
        (
            "PORTCULLIS__HOUSEKEEPING__AUDIT_RETENTION",
            "1h",
            "housekeeping.audit_retention",
        ),
        (
            "PORTCULLIS__SERVER__METRICS_BIND",
            "9464",
            "server.metrics_bind",
        ),
    ];
    for (var, value, key) in cases {
        let out = crate::helpers::run_bounded(
            Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .arg("serve")
                .env("PORTCULLIS__DATABASE__URL", &url)
                .env(var, value)
                .env_remove("PORTCULLIS_ENV"),
            "",
        );
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        assert!(
            stderr(&out).contains(key),
            "{var}={value}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn clients_are_managed_on_the_command_line() {
    let app = spawn_app().await;
    let db = app.db.url.clone();
    let create = |extra: &[&str]| {
        let mut args = vec!["clients", "create", "--name", "Acme", "--json"];
        args.extend_from_slice(extra);
        portcullis(&db, &args, "")
    };

    let out = create(&[
        "--kind",
        "confidential",
        "--client-id",
        "acme",
        "--redirect-uri",
        "https://acme.example.com/cb",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    let secret = created["client_secret"]
        .as_str()
        .expect("secret printed once")
        .to_owned();
    assert_eq!(secret.len(), 43, "256 bits, base64url");
    assert_eq!(created["auth_method"], "client_secret_basic");
    assert!(created.get("secret_hash").is_none());
    assert_eq!(created["require_pkce"], true, "PKCE by default");

    // A confidential client may be registered without PKCE, and changed back.
    let out = create(&[
        "--kind",
        "confidential",
        "--client-id",
        "acme-legacy",
        "--redirect-uri",
        "https://acme.example.com/cb",
        "--pkce-optional",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let legacy: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(legacy["require_pkce"], false);
    let out = portcullis(
        &db,
        &[
            "clients",
            "update",
            "--client-id",
            "acme-legacy",
            "--require-pkce",
            "true",
            "--json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let legacy: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(legacy["require_pkce"], true);

    for (name, extra) in [
        (
            "duplicate id",
            vec![
                "--kind",
                "spa",
                "--client-id",
                "acme",
                "--redirect-uri",
                "https://acme.example.com/cb",
            ],
        ),
        (
            "http redirect",
            vec![
                "--kind",
                "spa",
                "--redirect-uri",
                "http://acme.example.com/cb",
            ],
        ),
        (
            "wildcard",
            vec![
                "--kind",
                "spa",
                "--redirect-uri",
                "https://*.example.com/cb",
            ],
        ),
        (
            "fragment",
            vec![
                "--kind",
                "spa",
                "--redirect-uri",
                "https://acme.example.com/cb#x",
            ],
        ),
        (
            "custom scheme on a web client",
            vec![
                "--kind",
                "confidential",
                "--redirect-uri",
                "com.example.app:/cb",
            ],
        ),
        (
            "secret on a public client",
            vec![
                "--kind",
                "spa",
                "--auth-method",
                "client_secret_post",
                "--redirect-uri",
                "https://acme.example.com/cb",
            ],
        ),
        (
            "a public client without PKCE",
            vec![
                "--kind",
                "spa",
                "--redirect-uri",
                "https://acme.example.com/cb",
                "--pkce-optional",
            ],
        ),
        (
            "bad kind",
            vec![
                "--kind",
                "robot",
                "--redirect-uri",
                "https://acme.example.com/cb",
            ],
        ),
    ] {
        let out = create(&extra);
        assert!(!out.status.success(), "{name} should be refused");
        assert!(!stderr(&out).is_empty(), "{name} explains itself");
    }

    let native = create(&[
        "--kind",
        "native",
        "--client-id",
        "acme-cli",
        "--redirect-uri",
        "com.example.acme:/cb",
        "--redirect-uri",
        "http://127.0.0.1/cb",
    ]);
    assert!(native.status.success(), "{}", stderr(&native));
    let native: serde_json::Value = serde_json::from_str(stdout(&native).trim()).expect("JSON");
    assert!(native.get("client_secret").is_none());
    assert_eq!(native["auth_method"], "none");

    let rotated = portcullis(
        &db,
        &["clients", "rotate-secret", "--client-id", "acme", "--json"],
        "",
    );
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let rotated: serde_json::Value = serde_json::from_str(stdout(&rotated).trim()).expect("JSON");
    let new_secret = rotated["client_secret"].as_str().expect("new secret");
    assert_ne!(new_secret, secret);
    // The old secret stops working at once; the new one works.
    let token = |secret: String| {
        let url = app.url("/token");
        async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth("acme", Some(secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", "x"),
                    ("redirect_uri", "https://acme.example.com/cb"),
                    ("code_verifier", &"v".repeat(43)),
                ])
                .send()
                .await
                .expect("POST")
                .status()
        }
    };
    assert_eq!(token(secret).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        token(new_secret.to_owned()).await,
        StatusCode::BAD_REQUEST,
        "authenticated; the code is bad"
    );

    let list = portcullis(&db, &["clients", "list", "--json"], "");
    let list: serde_json::Value = serde_json::from_str(&stdout(&list)).expect("JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(3));
    let deleted = portcullis(&db, &["clients", "delete", "--client-id", "acme-cli"], "");
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let gone = portcullis(&db, &["clients", "show", "--client-id", "acme-cli"], "");
    assert!(!gone.status.success());
    assert_eq!(app.audit("client.created").await.len(), 3);
    assert_eq!(app.audit("client.secret_rotated").await.len(), 1);
    assert_eq!(app.audit("client.deleted").await.len(), 1);
}
