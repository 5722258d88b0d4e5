//! `portcullis doctor`: reads the deployment the way the server would and reports; it
//! fails (exit 1) only on what would stop the server or lose data, and changes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{TestApp, TestDatabase, run_bounded, spawn_app};

fn doctor(db_url: &str, key_file: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(["doctor", "--json"])
        .current_dir(key_file.parent().expect("key dir"))
        .env("PORTCULLIS__DATABASE__URL", db_url)
        .env("PORTCULLIS__KEYS__MASTER_KEY_FILE", key_file)
        .env("PORTCULLIS__KEYS__GENERATE_MASTER_KEY", "false")
        .env_remove("PORTCULLIS_MASTER_KEY")
        .env_remove("PORTCULLIS_ENV")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(&mut cmd, "")
}

/// A fresh random master key in `path`, mode 0600.
fn write_key(path: &Path) {
    std::fs::write(
        path,
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            rand::random::<[u8; 32]>(),
        ),
    )
    .expect("key file");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
}

/// check name → (status, message); a check reported twice keeps its worst finding.
fn findings(out: &Output) -> BTreeMap<String, (String, String)> {
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let rank = |s: &str| ["ok", "warn", "fail"].iter().position(|x| *x == s);
    let mut map: BTreeMap<String, (String, String)> = BTreeMap::new();
    for c in checks {
        let name = c["check"].as_str().expect("check").to_owned();
        let status = c["status"].as_str().expect("status").to_owned();
        let message = c["message"].as_str().expect("message").to_owned();
        let worse = map.get(&name).is_none_or(|(s, _)| rank(&status) > rank(s));
        if worse {
            map.insert(name, (status, message));
        }
    }
    map
}

fn status<'a>(f: &'a BTreeMap<String, (String, String)>, check: &str) -> &'a str {
    f.get(check)
        .map(|(s, _)| s.as_str())
        .unwrap_or_else(|| panic!("no {check} check in {f:?}"))
}

async fn key_rows(app: &TestApp) -> Vec<(String, String, Vec<u8>)> {
    app.store
        .list_signing_keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|k| (k.kid, k.state.to_string(), k.encrypted_private_key))
        .collect()
}

#[tokio::test]
async fn a_running_deployment_passes_and_each_problem_is_named() {
    let app = spawn_app().await;
    let key_file = Path::new(&app.settings.keys.master_key_file).to_path_buf();
    let before = key_rows(&app).await;

    // The test key file is world-readable: a warning with the fix, not a failure.
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    let out = doctor(&app.db.url, &key_file, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = findings(&out);
    assert_eq!(status(&f, "migrations"), "ok");
    assert_eq!(status(&f, "master_key_matches"), "ok");
    assert_eq!(status(&f, "database"), "ok");
    assert_eq!(status(&f, "token_lifetimes"), "ok");
    assert_eq!(status(&f, "password_hashing"), "ok");
    assert_eq!(status(&f, "environment"), "warn");
    assert_eq!(status(&f, "issuer"), "warn", "a plain http issuer");
    assert_eq!(status(&f, "master_key"), "warn");
    assert!(f["master_key"].1.contains("chmod 600"), "{f:?}");
    assert!(f["signing_keys"].1.contains("RS256"), "{f:?}");

    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let f = findings(&doctor(&app.db.url, &key_file, &[]));
    assert_eq!(status(&f, "master_key"), "ok");

    // An hour-long access token is a warning (DESIGN: 5 to 15 minutes).
    let f = findings(&doctor(
        &app.db.url,
        &key_file,
        &[("PORTCULLIS__TOKENS__ACCESS_TOKEN_LIFETIME", "1h")],
    ));
    assert_eq!(status(&f, "token_lifetimes"), "warn");

    // A master key the signing keys are not under would stop the server: a failure.
    let other = key_file.with_file_name("other.key");
    write_key(&other);
    let out = doctor(&app.db.url, &other, &[]);
    assert_eq!(out.status.code(), Some(1));
    let f = findings(&out);
    assert_eq!(status(&f, "master_key_matches"), "fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 check(s) failed"));

    // Weak password hashing is named.
    let f = findings(&doctor(
        &app.db.url,
        &key_file,
        &[("PORTCULLIS__PASSWORD__MEMORY_KIB", "8192")],
    ));
    assert_eq!(status(&f, "password_hashing"), "warn");

    assert_eq!(key_rows(&app).await, before, "doctor changed the keys");

    // Read-only on SQLite too: a deliberate file mode (say, for a backup group) stays.
    if let Some(path) = app.db.url.strip_prefix("sqlite://") {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let out = doctor(&app.db.url, &key_file, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mode = std::fs::metadata(path)
            .expect("db file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640, "doctor changed the database file's mode");
    }
}

#[tokio::test]
async fn pending_migrations_fail_only_when_the_server_would_not_apply_them() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("master.key");
    write_key(&key_file);
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        // An empty SQLite file: a database without the schema.
        std::fs::write(path, b"").expect("empty database file");
    }

    let out = doctor(&db.url, &key_file, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = findings(&out);
    assert_eq!(status(&f, "migrations"), "ok");
    assert!(f["migrations"].1.contains("pending"), "{f:?}");
    assert!(
        f["migrations"].1.contains("applies them when it starts"),
        "{f:?}"
    );

    let out = doctor(
        &db.url,
        &key_file,
        &[("PORTCULLIS__DATABASE__MIGRATE_ON_START", "false")],
    );
    assert_eq!(out.status.code(), Some(1));
    let f = findings(&out);
    assert_eq!(status(&f, "migrations"), "fail");
    assert!(f["migrations"].1.contains("portcullis migrate"), "{f:?}");

    // Doctor only reads: the schema is still missing.
    let store = portcullis::storage::connect(&portcullis::config::DatabaseSettings {
        url: db.url.clone(),
        max_connections: 1,
        connect_timeout: std::time::Duration::from_secs(5),
        migrate_on_start: false,
    })
    .await
    .expect("store");
    let backend = if db.url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let shipped = std::fs::read_dir(format!(
        "{}/migrations/{backend}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("migrations")
    .count();
    assert!(shipped >= 6);
    assert_eq!(
        store.pending_migrations().await.expect("pending").len(),
        shipped
    );
    store.close().await;
}

#[tokio::test]
async fn doctor_reports_the_size_and_growth_of_every_table() {
    let app = spawn_app().await;
    app.create_user("alice", crate::helpers::PASSWORD).await;
    app.login_ok(&app.client, "alice", crate::helpers::PASSWORD)
        .await;
    let trail = app.audit("login.success").await.len() + app.audit("user.created").await.len();
    let key_file = Path::new(&app.settings.keys.master_key_file).to_path_buf();
    let out = doctor(&app.db.url, &key_file, &[]);
    let f = findings(&out);
    assert_eq!(status(&f, "storage"), "ok");
    let message = &f["storage"].1;
    for table in [
        "users 1",
        "browser_sessions 1 (1 in the last day)",
        "audit_events",
        "refresh_tokens 0",
        "revoked_access_tokens 0",
        "login_throttles",
        "signing_keys",
    ] {
        assert!(message.contains(table), "{table} in {message}");
    }
    // Growth of the audit trail: every event of this test is from the last day.
    let audit = message
        .split("; ")
        .find(|t| t.starts_with("audit_events "))
        .unwrap_or_else(|| panic!("no audit_events in {message}"));
    let rows: usize = audit
        .split(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{audit}"));
    assert!(rows >= trail, "{audit}");
    assert!(
        audit.ends_with(&format!("({rows} in the last day)")),
        "{audit}"
    );
}
