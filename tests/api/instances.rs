//! Real `portcullis serve` processes: two instances on one Postgres converge on a rotation
//! through NOTIFY alone; a wrong or missing master key stops the server and changes
//! nothing; the master key is rotated on the command line.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis::keys::{KeyRing, MasterKey, RotationOutcome};
use portcullis::storage::{SigningKeyRecord, Store};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    PASSWORD, TestApp, TestDatabase, WEB_REDIRECT, authorize_path, browser, follow_at, pkce, query,
    rp_http, spawn_app_with, test_settings, web_app,
};

fn on_postgres() -> bool {
    std::env::var("TEST_DB").as_deref() == Ok("postgres")
}

pub(crate) fn write_key(path: &Path) -> String {
    let key: [u8; 32] = rand::random();
    let encoded = STANDARD.encode(key);
    std::fs::write(path, &encoded).expect("write master key");
    encoded
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The `portcullis` binary on `db_url` with the master key in `key_file`, run in `dir`
/// (so nothing lands in the source tree), with the environment cleared of our variables.
pub(crate) fn command(dir: &Path, db_url: &str, key_file: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.current_dir(dir)
        .env("PORTCULLIS__DATABASE__URL", db_url)
        .env("PORTCULLIS__DATABASE__MAX_CONNECTIONS", "3")
        .env("PORTCULLIS__KEYS__MASTER_KEY_FILE", key_file)
        .env("PORTCULLIS__KEYS__GENERATE_MASTER_KEY", "false")
        .env_remove("PORTCULLIS_MASTER_KEY")
        .env_remove("PORTCULLIS_ENV")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub(crate) fn run(mut cmd: Command, args: &[&str], stdin: &str) -> Output {
    crate::helpers::run_bounded(cmd.args(args), stdin)
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `portcullis serve` child process, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    log: PathBuf,
}

impl Server {
    /// Starts `cmd serve` on a free port, with one worker unless `cmd` names a number;
    /// stdout and stderr go to `log`.
    pub(crate) fn start(mut cmd: Command, log: PathBuf) -> Self {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        if !cmd
            .get_envs()
            .any(|(k, _)| k == "PORTCULLIS__SERVER__WORKERS")
        {
            cmd.env("PORTCULLIS__SERVER__WORKERS", "1");
        }
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .arg("serve")
            .env("PORTCULLIS__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("PORTCULLIS__ISSUER", &base)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("start portcullis serve");
        Self { child, base, log }
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`TERM`, `INT`, ...) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }

    pub(crate) async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = rp_http();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited with {status}:\n{}", self.logs());
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server never got ready:\n{}", self.logs());
    }

    /// Waits (up to `limit`) for the process to exit on its own.
    pub(crate) async fn exit_within(
        mut self,
        limit: Duration,
    ) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "the server kept running:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh authorization code flow against the server at `base` with its own browser
/// (the sign-in is real: the user and client exist in the shared database); returns the
/// token response.
async fn tokens_from(base: &str, secret: &str) -> Value {
    let browser = browser(base);
    let p = pkce();
    let back = follow_at(
        base,
        &browser,
        &authorize_path(&p, &[]),
        WEB_REDIRECT,
        "allow",
    )
    .await;
    let code = query(&back, "code").expect("code");
    let response = rp_http()
        .post(format!("{base}/token"))
        .basic_auth("web-app", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", p.verifier.as_str()),
        ])
        .send()
        .await
        .expect("POST /token");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "token endpoint of {base}"
    );
    response.json().await.expect("tokens")
}

fn kid_of(token: &Value) -> String {
    let header = token
        .as_str()
        .expect("token")
        .split('.')
        .next()
        .expect("header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
    header["kid"].as_str().expect("kid").to_owned()
}

/// (access token kid, ID token kid) of a token `base` issues now.
async fn signing_kids(base: &str, secret: &str) -> (String, String) {
    let tokens = tokens_from(base, secret).await;
    (kid_of(&tokens["access_token"]), kid_of(&tokens["id_token"]))
}

async fn open_store(url: &str) -> Arc<dyn Store> {
    portcullis::storage::connect(&test_settings(url).database)
        .await
        .expect("store")
}

async fn key_rows(store: &dyn Store) -> Vec<(String, String, String, Vec<u8>)> {
    store
        .list_signing_keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|k: SigningKeyRecord| {
            (
                k.kid,
                k.alg.to_string(),
                k.state.to_string(),
                k.encrypted_private_key,
            )
        })
        .collect()
}

fn current(rows: &[(String, String, String, Vec<u8>)], alg: &str) -> String {
    rows.iter()
        .find(|(_, a, s, _)| a == alg && s == "current")
        .map(|(k, ..)| k.clone())
        .expect("a current key")
}

#[tokio::test]
async fn two_instances_converge_on_a_rotation_through_notify_alone() {
    if !on_postgres() {
        eprintln!("skipped: two instances sharing a database need Postgres (TEST_DB=postgres)");
        return;
    }
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("master.key");
    write_key(&key_file);
    // Reloading every hour: only NOTIFY can explain a convergence within seconds.
    let env = [
        ("PORTCULLIS__KEYS__RELOAD_INTERVAL", "1h"),
        ("PORTCULLIS__KEYS__ALGORITHMS", "RS256,ES256"),
    ];
    let cmd = || command(dir.path(), &db.url, &key_file, &env);
    // Both start at once on an empty database: one creates each key, the other uses it.
    let mut a = Server::start(cmd(), dir.path().join("a.log"));
    let mut b = Server::start(cmd(), dir.path().join("b.log"));
    a.wait_ready().await;
    b.wait_ready().await;

    let out = run(
        cmd(),
        &["users", "create", "--username", "alice"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        cmd(),
        &[
            "clients",
            "create",
            "--name",
            "Acme",
            "--kind",
            "confidential",
            "--client-id",
            "web-app",
            "--redirect-uri",
            WEB_REDIRECT,
            "--first-party",
            "--id-token-alg",
            "ES256",
            "--json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    let store = open_store(&db.url).await;
    let rows = key_rows(store.as_ref()).await;
    assert_eq!(rows.len(), 4, "one current and one next key per algorithm");
    let before = (current(&rows, "RS256"), current(&rows, "ES256"));
    let mut old_tokens = Vec::new();
    for server in [&a, &b] {
        let tokens = tokens_from(&server.base, &secret).await;
        assert_eq!(
            (kid_of(&tokens["access_token"]), kid_of(&tokens["id_token"])),
            before
        );
        old_tokens.push(tokens["access_token"].as_str().expect("token").to_owned());
    }

    // Rotate from a third process, the CLI.
    let out = run(cmd(), &["keys", "rotate", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let outcomes: Value = serde_json::from_slice(&out.stdout).expect("json");
    let new_kid = |alg: &str| {
        outcomes
            .as_array()
            .expect("array")
            .iter()
            .find(|o| o["alg"] == alg && o["outcome"] == "rotated")
            .and_then(|o| o["current"].as_str())
            .expect("rotated")
            .to_owned()
    };
    let after = (new_kid("RS256"), new_kid("ES256"));
    assert_ne!(after.0, before.0);
    assert_ne!(after.1, before.1);

    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    for server in [&b, &a] {
        loop {
            let kids = signing_kids(&server.base, &secret).await;
            if kids == after {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} still signs with {kids:?}, not {after:?}, {:?} after the rotation:\n{}",
                server.base,
                started.elapsed(),
                server.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "both instances signed with the new keys {:?} after the rotation",
        started.elapsed()
    );
    // Tokens each instance signed before the rotation still verify there (each test
    // instance is its own issuer, so a token is only valid where it was issued).
    for (server, token) in [&a, &b].into_iter().zip(&old_tokens) {
        let r = rp_http()
            .get(format!("{}/userinfo", server.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("userinfo");
        assert_eq!(r.status(), StatusCode::OK, "{}", server.base);
    }
    drop((a, b));
    store.close().await;
}

#[tokio::test]
async fn the_key_listener_reconnects_and_catches_up_after_losing_its_connection() {
    if !on_postgres() {
        eprintln!("skipped: LISTEN/NOTIFY is Postgres only (TEST_DB=postgres)");
        return;
    }
    let app = spawn_app_with(|s| s.keys.reload_interval = Duration::from_secs(3600)).await;
    let db_name = app.db.url.rsplit('/').next().expect("db name").to_owned();
    let mut conn = {
        use sqlx::Connection as _;
        sqlx::PgConnection::connect(&app.db.url)
            .await
            .expect("connect")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let pids = listeners(&mut conn, &db_name).await;
        if !pids.is_empty() {
            break pids;
        }
        assert!(Instant::now() < deadline, "the server never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first.len(), 1, "one listening connection per instance");
    let killed: Vec<bool> = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(first[0])
        .fetch_all(&mut conn)
        .await
        .expect("terminate");
    assert_eq!(killed, [true]);

    // A rotation made elsewhere while the listener is down still reaches the server: it
    // reconnects (1 s backoff) and reloads.
    rotate_elsewhere_and_wait(&app, Duration::from_secs(15)).await;
    let again = listeners(&mut conn, &db_name).await;
    assert_eq!(again.len(), 1);
    assert_ne!(again, first, "a new listening connection");
}

/// The server processes LISTENing on database `db_name`.
async fn listeners(conn: &mut sqlx::PgConnection, db_name: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "select pid from pg_stat_activity where datname = $1 and query ilike 'listen%'",
    )
    .bind(db_name)
    .fetch_all(conn)
    .await
    .expect("pg_stat_activity")
}

/// Starts `serve` once with `key` so the keys exist, then stops it.
async fn initialise(dir: &Path, db_url: &str, key_file: &Path) {
    let mut first = Server::start(command(dir, db_url, key_file, &[]), dir.join("first.log"));
    first.wait_ready().await;
    drop(first);
}

#[tokio::test]
async fn serve_with_a_wrong_master_key_fails_at_once_and_changes_nothing() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("dir");
    let k1 = dir.path().join("k1.key");
    let k2 = dir.path().join("k2.key");
    write_key(&k1);
    write_key(&k2);
    initialise(dir.path(), &db.url, &k1).await;
    let store = open_store(&db.url).await;
    let before = key_rows(store.as_ref()).await;
    assert_eq!(before.len(), 2);

    let started = Instant::now();
    let wrong = Server::start(
        command(dir.path(), &db.url, &k2, &[]),
        dir.path().join("k2.log"),
    );
    let (status, logs) = wrong.exit_within(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(
        logs.contains(
            "loading the signing keys: the master key does not match the one the signing keys were encrypted with"
        ),
        "{logs}"
    );
    eprintln!("refused in {:?}", started.elapsed());
    assert_eq!(
        key_rows(store.as_ref()).await,
        before,
        "the key rows changed"
    );

    // The same through the environment variable, which wins over the file.
    let mut cmd = command(dir.path(), &db.url, &k1, &[]);
    cmd.env(
        "PORTCULLIS_MASTER_KEY",
        std::fs::read_to_string(&k2).expect("k2"),
    );
    let (status, logs) = Server::start(cmd, dir.path().join("env.log"))
        .exit_within(Duration::from_secs(20))
        .await;
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(logs.contains("the master key does not match"), "{logs}");

    // A key that is not a key at all.
    std::fs::write(&k2, "not base64!").expect("write");
    let (status, logs) = Server::start(
        command(dir.path(), &db.url, &k2, &[]),
        dir.path().join("bad.log"),
    )
    .exit_within(Duration::from_secs(20))
    .await;
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(
        logs.contains("the master key is not valid base64"),
        "{logs}"
    );
    assert!(
        !logs.contains("not base64!"),
        "the value was echoed: {logs}"
    );

    // No key at all (development defaults but generation off).
    let (status, logs) = Server::start(
        command(dir.path(), &db.url, &dir.path().join("absent.key"), &[]),
        dir.path().join("absent.log"),
    )
    .exit_within(Duration::from_secs(20))
    .await;
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(logs.contains("absent.key"), "{logs}");
    assert_eq!(
        key_rows(store.as_ref()).await,
        before,
        "the key rows changed"
    );
    store.close().await;
}

#[tokio::test]
async fn production_without_a_master_key_refuses_to_start() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("config")).expect("config dir");
    let production = dir.path().join("config/production.toml");
    let no_key = |cmd: &mut Command| {
        cmd.env("PORTCULLIS_ENV", "production")
            .env_remove("PORTCULLIS__KEYS__MASTER_KEY_FILE")
            .env_remove("PORTCULLIS__KEYS__GENERATE_MASTER_KEY");
    };

    // A production layer that forgets generate_master_key = false: a configuration error.
    std::fs::write(&production, "issuer = \"https://id.example.com\"\n").expect("write");
    let mut cmd = command(dir.path(), &db.url, Path::new(""), &[]);
    no_key(&mut cmd);
    let (status, logs) = Server::start(cmd, dir.path().join("p1.log"))
        .exit_within(Duration::from_secs(20))
        .await;
    assert_eq!(status.code(), Some(2), "{logs}");
    assert!(
        logs.contains("`keys.generate_master_key`: must be false when PORTCULLIS_ENV=production"),
        "{logs}"
    );

    // As it should be, but no key given: a clear error, and no key generated anywhere.
    std::fs::write(
        &production,
        "issuer = \"https://id.example.com\"\n[keys]\ngenerate_master_key = false\n",
    )
    .expect("write");
    let mut cmd = command(dir.path(), &db.url, Path::new(""), &[]);
    no_key(&mut cmd);
    let (status, logs) = Server::start(cmd, dir.path().join("p2.log"))
        .exit_within(Duration::from_secs(20))
        .await;
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(
        logs.contains("loading the master key: no master key: set PORTCULLIS_MASTER_KEY or keys.master_key_file"),
        "{logs}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "a master key was generated"
    );
    let store = open_store(&db.url).await;
    assert!(key_rows(store.as_ref()).await.is_empty());
    store.close().await;
}

#[tokio::test]
async fn the_master_key_is_rotated_on_the_command_line_and_old_tokens_survive() {
    let app = spawn_app_with(|s| {
        s.keys.algorithms = vec![
            portcullis::domain::jws::SigningAlg::RS256,
            portcullis::domain::jws::SigningAlg::ES256,
        ];
    })
    .await;
    app.create_user_named("alice", Some("Alice"), PASSWORD)
        .await;
    let (_, secret) = app
        .register_client(portcullis::clients::Registration {
            id_token_signed_response_alg: Some(portcullis::domain::jws::SigningAlg::ES256),
            ..web_app(true)
        })
        .await;
    let secret = secret.expect("secret");
    let before_tokens = tokens_from(&app.address, &secret).await;
    let access = before_tokens["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let id_token = before_tokens["id_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let issuer = app.settings.issuer.clone();
    let before = key_rows(app.store.as_ref()).await;
    assert_eq!(before.len(), 4);

    let dir = app.keydir.path().to_path_buf();
    let master_file = PathBuf::from(&app.settings.keys.master_key_file);
    let old_key = std::fs::read_to_string(&master_file).expect("k1");
    let new_file = dir.join("new.key");
    write_key(&new_file);
    let db_url = app.db.url.clone();
    let cli = |key_file: &Path| {
        command(
            &dir,
            &db_url,
            key_file,
            &[("PORTCULLIS__KEYS__ALGORITHMS", "RS256,ES256")],
        )
    };

    // Refusals change nothing: the same key, a malformed key, a wrong current key.
    for (current, new, stdin, expected) in [
        (
            &master_file,
            None,
            old_key.as_str(),
            "the new master key is the one in use",
        ),
        (
            &master_file,
            None,
            "not a key",
            "the master key is not valid base64",
        ),
        (
            &new_file,
            Some(&master_file),
            "",
            "the master key does not match",
        ),
    ] {
        let mut args = vec!["keys", "rotate-master-key"];
        let path;
        if let Some(new) = new {
            path = new.display().to_string();
            args.extend(["--new-key-file", path.as_str()]);
        }
        let out = run(cli(current), &args, &format!("{stdin}\n"));
        assert_eq!(out.status.code(), Some(1), "{expected}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{expected}: {}",
            stderr(&out)
        );
        assert_eq!(key_rows(app.store.as_ref()).await, before, "{expected}");
    }
    assert!(app.audit("key.master_rotated").await.is_empty());

    let out = run(
        cli(&master_file),
        &[
            "keys",
            "rotate-master-key",
            "--new-key-file",
            &new_file.display().to_string(),
            "--json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut reencrypted: Vec<&str> = result["reencrypted"]
        .as_array()
        .expect("array")
        .iter()
        .map(|k| k.as_str().expect("kid"))
        .collect();
    reencrypted.sort_unstable();
    let mut kids: Vec<&str> = before.iter().map(|(k, ..)| k.as_str()).collect();
    kids.sort_unstable();
    assert_eq!(reencrypted, kids);
    let after = key_rows(app.store.as_ref()).await;
    for (old, new) in before.iter().zip(&after) {
        assert_eq!((&old.0, &old.1, &old.2), (&new.0, &new.1, &new.2));
        assert_ne!(old.3, new.3, "{} was not re-encrypted", old.0);
    }
    let audit = app.audit("key.master_rotated").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["reencrypted"], 4);

    // The instance still running with the old key keeps serving from memory.
    let r = rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(r.status(), StatusCode::OK);

    // The old key no longer starts a server; the new one does.
    let (status, logs) = Server::start(cli(&master_file), dir.join("old.log"))
        .exit_within(Duration::from_secs(20))
        .await;
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(logs.contains("the master key does not match"), "{logs}");
    std::fs::copy(&new_file, &master_file).expect("install the new key");
    let app: TestApp = app.restart().await;
    let fresh = tokens_from(&app.address, &secret).await;
    assert_eq!(
        kid_of(&fresh["access_token"]),
        kid_of(&before_tokens["access_token"])
    );
    assert_eq!(
        kid_of(&fresh["id_token"]),
        kid_of(&before_tokens["id_token"])
    );
    assert_eq!(key_rows(app.store.as_ref()).await, after);
    // Tokens signed before the rotation verify with the keys loaded under the new master
    // key. (The restarted test server listens on a new port, so it is another issuer:
    // check them against the keys directly, with the issuer they were issued by.)
    let ring = KeyRing::load_or_init_for(
        app.store.clone(),
        MasterKey::from_file(&new_file).expect("new key"),
        Arc::new(app.clock.clone()),
        &app.settings,
    )
    .await
    .expect("keys under the new master key");
    let expect = |typ, audience| portcullis::keys::Expectations {
        typ,
        issuer: &issuer,
        audience: Some(audience),
        allow_expired: false,
    };
    let _: Value = ring
        .verify(&access, &expect("at+jwt", &issuer))
        .expect("old access token");
    let _: Value = ring
        .verify(&id_token, &expect("JWT", "web-app"))
        .expect("old ES256 ID token");

    // Once more, the new key read from stdin.
    let third = STANDARD.encode(rand::random::<[u8; 32]>());
    let out = run(
        cli(&master_file),
        &["keys", "rotate-master-key"],
        &format!("{third}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Re-encrypted 4 signing key(s)"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&third));
    let third_key = MasterKey::from_base64(&third).expect("key");
    for k in app.store.list_signing_keys().await.expect("keys") {
        assert!(
            third_key
                .decrypt(&k.encrypted_private_key, k.kid.as_bytes())
                .is_ok()
        );
    }
}

#[tokio::test]
async fn a_rotation_made_next_to_a_running_server_reaches_it_at_once() {
    // Reloading every hour: only NOTIFY (Postgres) or the change check (SQLite) can
    // explain the server seeing a rotation made by another process (the CLI) in seconds.
    let app = spawn_app_with(|s| s.keys.reload_interval = Duration::from_secs(3600)).await;
    rotate_elsewhere_and_wait(&app, Duration::from_secs(10)).await;
}

/// Rotates the keys through a key ring of its own (as another instance or the CLI would)
/// and waits, at most `limit`, until the server publishes the new next key.
async fn rotate_elsewhere_and_wait(app: &TestApp, limit: Duration) {
    let master = MasterKey::load(&app.settings.keys).expect("master key");
    let ring = KeyRing::load_or_init_for(
        app.store.clone(),
        master,
        Arc::new(app.clock.clone()),
        &app.settings,
    )
    .await
    .expect("ring");
    let outcomes = ring.rotate().await.expect("rotate");
    let Some(RotationOutcome::Rotated {
        next: Some(next), ..
    }) = outcomes.first()
    else {
        panic!("{outcomes:?}");
    };
    let deadline = Instant::now() + limit;
    loop {
        let jwks = rp_http()
            .get(app.url("/jwks.json"))
            .send()
            .await
            .expect("jwks")
            .text()
            .await
            .expect("body");
        if jwks.contains(next.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never saw the rotation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
