//! Signing-key rotation: next → current → retired → deleted, published in the JWKS while
//! tokens signed by the key may still be presented; concurrent rotations; the CLI.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::clock::Clock as _;
use portcullis::domain::jws::SigningAlg;
use portcullis::domain::signing_key::KeyState;
use portcullis::keys::{KeyRing, MasterKey, RotationOutcome, retention};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    PASSWORD, TestApp, WEB_REDIRECT, browser, code, exchange, pkce, rp_http, spawn_app_with,
    web_app,
};

/// The server reloads its keys every second, so rotations made elsewhere show up fast.
async fn app() -> TestApp {
    let app = spawn_app_with(|s| s.keys.reload_interval = Duration::from_secs(1)).await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    app
}

async fn ring(app: &TestApp) -> KeyRing {
    let master = MasterKey::load(&app.settings.keys).expect("master key");
    KeyRing::load_or_init_with(
        app.store.clone(),
        master,
        Arc::new(app.clock.clone()),
        retention(&app.settings),
    )
    .await
    .expect("key ring")
}

/// An access token from a fresh code flow (registers the client on first use).
async fn access_token(app: &TestApp, secret: &mut Option<Option<String>>) -> String {
    if secret.is_none() {
        let (_, s) = app.register_client(web_app(true)).await;
        *secret = Some(s);
    }
    let p = pkce();
    let c = code(app, &browser(&app.address), &p, &[]).await;
    let tokens: Value = exchange(
        app,
        "web-app",
        secret.as_ref().and_then(|s| s.as_deref()),
        &c,
        WEB_REDIRECT,
        &p.verifier,
    )
    .await
    .json()
    .await
    .expect("tokens");
    tokens["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().expect("header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
    header["kid"].as_str().expect("kid").to_owned()
}

async fn jwks_kids(app: &TestApp) -> BTreeSet<String> {
    let jwks: Value = rp_http()
        .get(app.url("/jwks.json"))
        .send()
        .await
        .expect("GET /jwks.json")
        .json()
        .await
        .expect("json");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// Polls the JWKS until `done` holds (the server reloads every second).
async fn wait_for_jwks(
    app: &TestApp,
    done: impl Fn(&BTreeSet<String>) -> bool,
) -> BTreeSet<String> {
    let mut kids = jwks_kids(app).await;
    for _ in 0..50 {
        if done(&kids) {
            return kids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        kids = jwks_kids(app).await;
    }
    panic!("the JWKS never reached the expected state: {kids:?}");
}

async fn userinfo(app: &TestApp, token: &str) -> reqwest::Response {
    rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /userinfo")
}

async fn assert_invalid_token(app: &TestApp, token: &str) {
    let response = userinfo(app, token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("header")
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

async fn states(app: &TestApp) -> Vec<(String, String)> {
    app.store
        .list_signing_keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|k| (k.kid, k.state.to_string()))
        .collect()
}

#[tokio::test]
async fn first_start_creates_a_current_and_a_published_next_key() {
    let app = app().await;
    let keys = states(&app).await;
    assert_eq!(keys.iter().filter(|(_, s)| s == "current").count(), 1);
    assert_eq!(keys.iter().filter(|(_, s)| s == "next").count(), 1);
    let published = jwks_kids(&app).await;
    let all: BTreeSet<String> = keys.into_iter().map(|(k, _)| k).collect();
    assert_eq!(published, all);
}

#[tokio::test]
async fn a_rotation_keeps_old_tokens_valid_until_remove_after() {
    let app = app().await;
    let mut secret = None;
    let before = access_token(&app, &mut secret).await;
    let old_kid = kid_of(&before);

    let ring = ring(&app).await;
    let next_before = states(&app)
        .await
        .into_iter()
        .find(|(_, s)| s == "next")
        .expect("a next key")
        .0;
    let outcomes = ring.rotate().await.expect("rotate");
    let [
        RotationOutcome::Rotated {
            retired,
            current,
            next,
            remove_after,
            ..
        },
    ] = &outcomes[..]
    else {
        panic!("a lone rotation lost a race: {outcomes:?}");
    };
    let (retired, current, next, remove_after) = (
        retired.clone(),
        current.clone(),
        next.clone(),
        *remove_after,
    );
    assert_eq!(retired, old_kid);
    // The pre-published key is the one promoted.
    assert_eq!(current, next_before);
    let next = next.expect("a new next key");
    assert_eq!(
        remove_after,
        app.clock.now() + time::Duration::seconds(10 * 60 + 60)
    );

    let kids = wait_for_jwks(&app, |k| k.contains(&next)).await;
    assert_eq!(
        kids,
        BTreeSet::from([old_kid.clone(), current.clone(), next.clone()])
    );

    // New tokens carry the new kid; the old token still verifies.
    let after = access_token(&app, &mut secret).await;
    assert_eq!(kid_of(&after), current);
    assert_eq!(userinfo(&app, &before).await.status(), StatusCode::OK);
    assert_eq!(userinfo(&app, &after).await.status(), StatusCode::OK);

    // The rotation was audited.
    let audit = app
        .store
        .list_audit(&portcullis::audit::AuditQuery {
            kind: Some("key.rotated".into()),
            user_id: None,
            limit: 10,
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["kid"], old_kid.as_str());

    // No private key is stored in the clear: its DER embeds the modulus, and no 16-byte
    // run of the modulus appears in the stored blob.
    for key in app.store.list_signing_keys().await.expect("keys") {
        let n = URL_SAFE_NO_PAD
            .decode(key.public_jwk["n"].as_str().expect("n"))
            .expect("b64");
        assert!(
            n.windows(16)
                .all(|w| !key.encrypted_private_key.windows(16).any(|b| b == w)),
            "{} is stored in the clear",
            key.kid
        );
        assert!(key.public_jwk.get("d").is_none());
    }

    // Past remove_after the old key leaves the JWKS and its tokens fail.
    app.clock.advance(time::Duration::seconds(11 * 60 + 1));
    let kids = wait_for_jwks(&app, |k| !k.contains(&old_kid)).await;
    assert_eq!(kids, BTreeSet::from([current.clone(), next.clone()]));
    assert_invalid_token(&app, &before).await;
    // A later rotation deletes it from the database.
    ring.rotate().await.expect("rotate again");
    assert!(states(&app).await.iter().all(|(k, _)| *k != old_kid));
}

#[tokio::test]
async fn an_emergency_retirement_unpublishes_the_key_at_once() {
    let app = app().await;
    let mut secret = None;
    let before = access_token(&app, &mut secret).await;
    let old_kid = kid_of(&before);
    assert_eq!(userinfo(&app, &before).await.status(), StatusCode::OK);

    let out = portcullis(&app, &["keys", "retire", "--kid", &old_kid, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(result["outcome"], "retired");
    assert_eq!(result["previous_state"], "current");
    let promoted = result["promoted"].as_str().expect("promoted").to_owned();
    let next = result["next"].as_str().expect("next").to_owned();

    let kids = wait_for_jwks(&app, |k| !k.contains(&old_kid)).await;
    assert_eq!(kids, BTreeSet::from([promoted.clone(), next]));
    assert_invalid_token(&app, &before).await;
    let after = access_token(&app, &mut secret).await;
    assert_eq!(kid_of(&after), promoted);
    assert_eq!(userinfo(&app, &after).await.status(), StatusCode::OK);

    let keys = states(&app).await;
    assert_eq!(keys.iter().filter(|(_, s)| s == "current").count(), 1);
    let audit = app
        .store
        .list_audit(&portcullis::audit::AuditQuery {
            kind: Some("key.retired".into()),
            user_id: None,
            limit: 10,
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);

    // A compromised next key is unpublished and replaced by a fresh next key at once;
    // the current key keeps signing.
    let next = result["next"].as_str().expect("next").to_owned();
    let out = portcullis(&app, &["keys", "retire", "--kid", &next, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(result["previous_state"], "next");
    assert_eq!(result["promoted"], Value::Null);
    let replacement = result["next"].as_str().expect("a new next key").to_owned();
    assert_ne!(replacement, next);
    let kids = wait_for_jwks(&app, |k| !k.contains(&next)).await;
    assert_eq!(
        kids,
        BTreeSet::from([promoted.clone(), replacement.clone()])
    );
    let keys = states(&app).await;
    assert!(keys.contains(&(replacement, "next".to_owned())), "{keys:?}");
    assert!(
        keys.contains(&(promoted.clone(), "current".to_owned())),
        "{keys:?}"
    );
    let still = access_token(&app, &mut secret).await;
    assert_eq!(kid_of(&still), promoted);

    // An unknown kid is an error.
    let out = portcullis(&app, &["keys", "retire", "--kid", "no-such-key"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no signing key no-such-key"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn concurrent_rotations_leave_exactly_one_current_key() {
    let app = app().await;
    let rings = rings(&app, 5).await;
    let expected = rings[0].current_kid().expect("current");
    let mut tasks = Vec::new();
    for ring in rings {
        tasks.push(tokio::spawn(async move { ring.rotate().await }));
    }
    let mut won = 0;
    let mut lost = 0;
    for task in tasks {
        let outcomes = task.await.expect("task").expect("rotate");
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        match outcomes.into_iter().next().expect("outcome") {
            RotationOutcome::Rotated { retired, .. } => {
                assert_eq!(retired, expected);
                won += 1;
            }
            RotationOutcome::LostRace { current, .. } => {
                assert!(current.is_some());
                lost += 1;
            }
        }
    }
    assert_eq!((won, lost), (1, 4));
    let keys = app.store.list_signing_keys().await.expect("keys");
    let current: Vec<_> = keys
        .iter()
        .filter(|k| k.state == KeyState::Current)
        .collect();
    assert_eq!(current.len(), 1, "{keys:?}");
    assert_eq!(current[0].alg, SigningAlg::RS256);
    assert_eq!(keys.iter().filter(|k| k.state == KeyState::Next).count(), 1);
    assert_eq!(
        keys.iter().filter(|k| k.state == KeyState::Retired).count(),
        1
    );
}

async fn rings(app: &TestApp, n: usize) -> Vec<KeyRing> {
    let mut rings = Vec::new();
    for _ in 0..n {
        rings.push(ring(app).await);
    }
    rings
}

fn portcullis(app: &TestApp, args: &[&str]) -> Output {
    crate::helpers::run_bounded(
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

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn keys_list_and_rotate_on_the_command_line() {
    let app = app().await;
    let out = portcullis(&app, &["keys", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 2);
    let current = listed
        .iter()
        .find(|k| k["state"] == "current")
        .expect("current");
    assert_eq!(current["alg"], "RS256");
    assert!(current["activated_at"].is_string());
    assert!(current["remove_after"].is_null());
    let old = current["kid"].as_str().expect("kid").to_owned();

    let out = portcullis(&app, &["keys", "rotate", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rotated: Value = serde_json::from_slice(&out.stdout).expect("json");
    // One outcome per configured algorithm: RS256 only here.
    assert_eq!(rotated.as_array().map(Vec::len), Some(1), "{rotated}");
    let rotated = &rotated[0];
    assert_eq!(rotated["outcome"], "rotated");
    assert_eq!(rotated["alg"], "RS256");
    assert_eq!(rotated["retired"], old.as_str());
    let new = rotated["current"].as_str().expect("current").to_owned();

    let out = portcullis(&app, &["keys", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    let state = |kid: &str| {
        listed
            .as_array()
            .expect("array")
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["state"].as_str().expect("state").to_owned())
    };
    assert_eq!(state(&old).as_deref(), Some("retired"));
    assert_eq!(state(&new).as_deref(), Some("current"));
    assert_eq!(listed.as_array().expect("array").len(), 3);

    // The running server picks it up and signs with the new key.
    wait_for_jwks(&app, |k| k.len() == 3).await;
    let mut secret = None;
    let token = access_token(&app, &mut secret).await;
    assert_eq!(kid_of(&token), new);
}

/// Migration 0003 on a database from before it: duplicate `next` keys that two instances
/// created at once are reduced to the oldest before the one-next-per-algorithm index is
/// built, and existing clients get RS256 ID tokens.
#[tokio::test]
async fn migration_0003_keeps_the_oldest_of_duplicate_next_keys() {
    use std::borrow::Cow;

    let db = crate::helpers::TestDatabase::create().await;
    let sqlite = db.url.starts_with("sqlite:");
    let dir = format!(
        "{}/migrations/{}",
        env!("CARGO_MANIFEST_DIR"),
        if sqlite { "sqlite" } else { "postgres" }
    );
    let all = sqlx::migrate::Migrator::new(std::path::Path::new(&dir))
        .await
        .expect("migrations");
    let mut before = sqlx::migrate::Migrator::new(std::path::Path::new(&dir))
        .await
        .expect("migrations");
    before.migrations = Cow::Owned(
        all.migrations
            .iter()
            .filter(|m| m.version < 3)
            .cloned()
            .collect(),
    );
    // (kid, alg, state, seconds ago)
    let rows = [
        ("rs-current", "RS256", "current", 300),
        ("rs-next-old", "RS256", "next", 200),
        ("rs-next-new", "RS256", "next", 100),
        ("rs-next-newest", "RS256", "next", 50),
        ("rs-retired", "RS256", "retired", 400),
        ("es-next", "ES256", "next", 100),
    ];
    let now = time::OffsetDateTime::now_utc();
    let insert_key = "insert into signing_keys (kid, alg, state, encrypted_private_key, \
                      public_jwk, created_at) values ($1, $2, $3, $4, $5, $6)";
    let insert_client = "insert into clients (client_id, name, kind, auth_method, \
                         redirect_uris, post_logout_redirect_uris, allowed_origins, grant_types, \
                         scopes, created_at, updated_at) \
                         values ('old', 'Old', 'spa', 'none', '[]', '[]', '[]', '[]', '[]', $1, $1)";
    let remaining: Vec<(String, String)>;
    let alg: String;
    macro_rules! scenario {
        ($pool:expr, $ts:expr) => {{
            let pool = $pool;
            before.run(&pool).await.expect("0001-0002");
            for (kid, alg, state, ago) in rows {
                sqlx::query(insert_key)
                    .bind(kid)
                    .bind(alg)
                    .bind(state)
                    .bind(vec![0u8; 32])
                    .bind(sqlx::types::Json(serde_json::json!({})))
                    .bind($ts(now - time::Duration::seconds(ago)))
                    .execute(&pool)
                    .await
                    .expect("insert key");
            }
            sqlx::query(insert_client)
                .bind($ts(now))
                .execute(&pool)
                .await
                .expect("insert client");
            all.run(&pool).await.expect("0003");
            remaining = sqlx::query_as("select kid, state from signing_keys order by kid")
                .fetch_all(&pool)
                .await
                .expect("keys");
            alg = sqlx::query_scalar("select id_token_signed_response_alg from clients")
                .fetch_one(&pool)
                .await
                .expect("client");
            // The index now refuses a second next key.
            let second = sqlx::query(insert_key)
                .bind("rs-next-again")
                .bind("RS256")
                .bind("next")
                .bind(vec![0u8; 32])
                .bind(sqlx::types::Json(serde_json::json!({})))
                .bind($ts(now))
                .execute(&pool)
                .await;
            assert!(second.is_err(), "a second next key was accepted");
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
        scenario!(pool, |t: time::OffsetDateTime| t.unix_timestamp());
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
        scenario!(pool, |t: time::OffsetDateTime| t);
    }
    let expected: Vec<(String, String)> = [
        ("es-next", "next"),
        ("rs-current", "current"),
        ("rs-next-old", "next"),
        ("rs-retired", "retired"),
    ]
    .into_iter()
    .map(|(k, s)| (k.to_owned(), s.to_owned()))
    .collect();
    assert_eq!(remaining, expected);
    assert_eq!(alg, "RS256");
}
