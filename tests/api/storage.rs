//! The two backends stay in step, and single-use rows cannot be used twice.

use std::collections::BTreeSet;

use portcullis::audit::{Actor, AuditEvent, AuditKind, Outcome};
use portcullis::clock::Clock;
use portcullis::domain::secret::OpaqueToken;
use portcullis::domain::session::{BrowserSession, SessionId};
use portcullis::storage::{CompletedLogin, NewSession, StoreError};

use crate::helpers::{PASSWORD, spawn_app};

fn migration_names(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
        .expect("migrations dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn postgres_and_sqlite_migrations_pair_up() {
    let pg = migration_names("postgres");
    let sqlite = migration_names("sqlite");
    assert!(!pg.is_empty());
    assert_eq!(pg, sqlite);
}

#[tokio::test]
async fn usernames_are_unique_case_insensitively() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let now = app.clock.now();
    let audit = AuditEvent::new(now, AuditKind::UserCreated, Outcome::Success, &Actor::cli());
    let result = app
        .store
        .create_user(
            &portcullis::domain::user::NewUser {
                username: portcullis::domain::user::Username::parse("ALICE").expect("name"),
                email: None,
                name: None,
                password_hash: None,
            },
            now,
            &audit,
        )
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
}

#[tokio::test]
async fn concurrent_submissions_of_one_sign_in_form_create_one_session() {
    let app = spawn_app().await;
    let user = app.create_user("alice", PASSWORD).await;
    let name = portcullis::domain::user::Username::parse("alice").expect("name");
    let (_, hash) = app
        .store
        .find_user(&name)
        .await
        .expect("lookup")
        .expect("user");
    let hash = hash.expect("password hash");
    let binding = OpaqueToken::generate();
    let tx = app.store.clone();
    let auth_tx = {
        let now = app.clock.now();
        let id = OpaqueToken::generate();
        tx.insert_login_transaction(&portcullis::storage::LoginTransaction {
            id_hash: id.hash(),
            binding_hash: binding.hash(),
            return_to: "/account".into(),
            request: None,
            created_at: now,
            expires_at: now + time::Duration::minutes(5),
            session_id: None,
            second_step: None,
        })
        .await
        .expect("transaction");
        id
    };

    let attempts = (0..10).map(|_| {
        let store = app.store.clone();
        let now = app.clock.now();
        let tx_hash = auth_tx.hash();
        let user_id = user.id;
        let hash = hash.clone();
        tokio::spawn(async move {
            let cookie = OpaqueToken::generate();
            let session = NewSession {
                id_hash: cookie.hash(),
                session: BrowserSession {
                    id: SessionId::new(),
                    user_id,
                    auth_time: now,
                    amr: vec!["pwd".into()],
                    factors: portcullis::domain::mfa::SessionFactors::password(now),
                    created_at: now,
                    last_seen_at: now,
                    idle_expires_at: now + time::Duration::hours(1),
                    absolute_expires_at: now + time::Duration::hours(8),
                    ip: None,
                    user_agent: None,
                },
            };
            let audit = AuditEvent::new(
                now,
                AuditKind::LoginSuccess,
                Outcome::Success,
                &Actor::cli(),
            );
            store
                .complete_login(
                    &CompletedLogin {
                        transaction: tx_hash,
                        session: &session,
                        throttle_key: "alice",
                        lease: portcullis::domain::throttle::LeaseId::new(),
                        replaces: None,
                        verified: portcullis::storage::VerifiedCredential::Password(&hash),
                        audit: &audit,
                        also_clear: None,
                        second_step: false,
                    },
                    now,
                )
                .await
        })
    });
    let mut wins = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        if attempt.await.expect("task").expect("no database error") {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(app.session_count(&user).await, 1);
    assert_eq!(app.audit("login.success").await.len(), 1);
}

#[tokio::test]
async fn many_browsers_signing_in_at_once_all_succeed() {
    let app = spawn_app().await;
    for i in 0..8 {
        app.create_user(&format!("user{i}"), PASSWORD).await;
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = app.new_browser();
        let url = app.url("/login");
        tasks.push(tokio::spawn(async move {
            let html = client
                .get(&url)
                .send()
                .await
                .expect("GET")
                .text()
                .await
                .expect("body");
            let tx = crate::helpers::hidden_field(&html, "tx").expect("tx");
            let csrf = crate::helpers::hidden_field(&html, "csrf_token").expect("csrf");
            let name = format!("user{i}");
            client
                .post(&url)
                .form(&[
                    ("tx", tx.as_str()),
                    ("csrf_token", &csrf),
                    ("username", &name),
                    ("password", PASSWORD),
                ])
                .send()
                .await
                .expect("POST")
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), reqwest::StatusCode::SEE_OTHER);
    }
    assert_eq!(app.audit("login.success").await.len(), 8);
}

async fn whole_trail(app: &crate::helpers::TestApp) -> Vec<portcullis::audit::AuditRecord> {
    app.store
        .search_audit(&portcullis::audit::AuditSearch {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit")
}

#[tokio::test]
async fn housekeeping_purges_expired_rows_in_batches() {
    let app = spawn_app().await;
    let user = app.create_user("alice", PASSWORD).await;
    app.login_ok(&app.client, "alice", PASSWORD).await;
    for _ in 0..3 {
        app.login_form(&app.new_browser()).await;
    }
    // A session is purged a day after it ended (here: its 8-hour absolute limit), so that
    // a revocation keeps reaching the access tokens issued in it.
    app.clock.advance(time::Duration::hours(8 + 25));
    let now = app.clock.now();
    let cutoffs = portcullis::storage::PurgeCutoffs {
        now,
        ended_before: now - time::Duration::days(1),
        throttle_before: now - time::Duration::minutes(15),
        audit_before: None,
    };
    let first = app.store.purge_expired(&cutoffs, 2).await.expect("purge");
    assert!(first >= 2, "a bounded batch per table: {first}");
    let mut total = first;
    loop {
        let n = app.store.purge_expired(&cutoffs, 2).await.expect("purge");
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 5, "four sign-in forms and one session");
    assert_eq!(app.session_count(&user).await, 0);
    let trail = whole_trail(&app).await;
    assert!(!trail.is_empty(), "no retention: kept");

    // With a retention, events older than it go, in batches; newer ones stay.
    let old = app.audit("login.success").await.len() + app.audit("user.created").await.len();
    assert!(old >= 2);
    app.clock.advance(time::Duration::days(30));
    let now = app.clock.now();
    let recent = portcullis::audit::AuditEvent::new(
        now,
        portcullis::audit::AuditKind::Logout,
        portcullis::audit::Outcome::Success,
        &portcullis::audit::Actor::cli(),
    );
    app.store.record_audit(&[recent]).await.expect("audit");
    let cutoffs = portcullis::storage::PurgeCutoffs {
        now,
        ended_before: now - time::Duration::days(1),
        throttle_before: now - time::Duration::minutes(15),
        audit_before: Some(now - time::Duration::days(7)),
    };
    let mut purged = 0;
    loop {
        let n = app.store.purge_expired(&cutoffs, 1).await.expect("purge");
        if n == 0 {
            break;
        }
        assert_eq!(n, 1, "one row per statement");
        purged += n;
    }
    assert!(purged >= 2);
    let left = whole_trail(&app).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].kind, "logout");
}

#[tokio::test]
async fn a_sign_in_verified_against_a_replaced_password_creates_no_session() {
    let app = spawn_app().await;
    let user = app.create_user("alice", PASSWORD).await;
    let now = app.clock.now();
    let id = OpaqueToken::generate();
    app.store
        .insert_login_transaction(&portcullis::storage::LoginTransaction {
            id_hash: id.hash(),
            binding_hash: OpaqueToken::generate().hash(),
            return_to: "/account".into(),
            request: None,
            created_at: now,
            expires_at: now + time::Duration::minutes(5),
            session_id: None,
            second_step: None,
        })
        .await
        .expect("transaction");
    // The hash the (slow) sign-in verified, before an administrator reset the password.
    let stale = portcullis::domain::user::PasswordHash("$argon2id$v=19$stale".into());
    let session = NewSession {
        id_hash: OpaqueToken::generate().hash(),
        session: BrowserSession {
            id: SessionId::new(),
            user_id: user.id,
            auth_time: now,
            amr: vec!["pwd".into()],
            factors: portcullis::domain::mfa::SessionFactors::password(now),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now + time::Duration::hours(1),
            absolute_expires_at: now + time::Duration::hours(8),
            ip: None,
            user_agent: None,
        },
    };
    let audit = AuditEvent::new(
        now,
        AuditKind::LoginSuccess,
        Outcome::Success,
        &Actor::cli(),
    );
    let completed = app
        .store
        .complete_login(
            &CompletedLogin {
                transaction: id.hash(),
                session: &session,
                throttle_key: "k",
                lease: portcullis::domain::throttle::LeaseId::new(),
                replaces: None,
                verified: portcullis::storage::VerifiedCredential::Password(&stale),
                audit: &audit,
                also_clear: None,
                second_step: false,
            },
            now,
        )
        .await
        .expect("no database error");
    assert!(!completed);
    assert_eq!(app.session_count(&user).await, 0);
}

#[tokio::test]
async fn postgres_connections_can_require_tls() {
    if std::env::var("TEST_DB").as_deref() != Ok("postgres") {
        eprintln!("skipped: TLS to the database is a Postgres matter (TEST_DB=postgres)");
        return;
    }
    use sqlx::Connection as _;
    // The local cluster serves TLS with a self-signed certificate: `require` encrypts
    // (production should use `verify-full` with `sslrootcert`).
    let db = crate::helpers::TestDatabase::create().await;
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}sslmode=require", db.url);
    let mut settings = crate::helpers::test_settings(&url);
    settings.database.url = url.clone();
    let store = portcullis::storage::connect(&settings.database)
        .await
        .expect("connect with sslmode=require");
    store.migrate().await.expect("migrations over TLS");
    store.ping().await.expect("ping over TLS");
    store.close().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let encrypted: bool =
        sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_ssl");
    assert!(encrypted, "the connection is encrypted");
    // A certificate that cannot be verified is refused when verification is asked for.
    let verify = format!("{}{sep}sslmode=verify-full", db.url);
    assert!(sqlx::PgConnection::connect(&verify).await.is_err());
}
