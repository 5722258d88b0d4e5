//! Database outages (issue 10 item 8): while the database cannot be reached, every
//! endpoint answers 503 with `Retry-After` in its own error shape (RFC 6749 §5.2
//! `temporarily_unavailable` for the protocol endpoints, RFC 9457 problem+json for the
//! admin API, an error page for browsers), `/readyz` answers at once instead of waiting
//! for `database.connect_timeout`, and service resumes when the database is back.
//!
//! On Postgres the outage is a cut TCP proxy between server and database; on SQLite it
//! is another process holding the write lock (reads still work there, writes cannot).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use portcullis::clients::Registration;

use crate::admin::token_for;
use crate::helpers::{PASSWORD, TestApp, code, exchange_web, pkce, spawn_app_with, web_app};

/// A TCP proxy to Postgres that can be cut (every connection dropped, new ones refused)
/// and restored.
struct Proxy {
    port: u16,
    down: Arc<watch::Sender<bool>>,
}

impl Proxy {
    /// Listens on a free port and forwards to `upstream`. While down, as with a stopped
    /// server, connections are refused (nothing listens) and open ones are dropped.
    fn start(upstream: String) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let (down, _) = watch::channel(false);
        let down = Arc::new(down);
        let flag = Arc::clone(&down);
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let mut state = flag.subscribe();
                loop {
                    let _ = state.wait_for(|down| !*down).await;
                    let listener = TcpListener::bind(("127.0.0.1", port))
                        .await
                        .expect("proxy port");
                    let _ = bound_tx.send(());
                    loop {
                        tokio::select! {
                            accepted = listener.accept() => {
                                let Ok((mut inbound, _)) = accepted else { continue };
                                let upstream = upstream.clone();
                                let mut cut = flag.subscribe();
                                tokio::spawn(async move {
                                    let Ok(mut outbound) = TcpStream::connect(&upstream).await
                                    else {
                                        return;
                                    };
                                    tokio::select! {
                                        _ = tokio::io::copy_bidirectional(
                                            &mut inbound, &mut outbound) => {}
                                        _ = cut.wait_for(|down| *down) => {}
                                    }
                                });
                            }
                            _ = state.wait_for(|down| *down) => break,
                        }
                    }
                }
            });
        });
        bound_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("proxy listening");
        Self { port, down }
    }

    fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

enum Outage {
    Postgres(Proxy),
    /// A connection holding `BEGIN EXCLUSIVE` on the SQLite file.
    Sqlite {
        url: String,
        holder: Option<sqlx::SqliteConnection>,
    },
}

impl Outage {
    async fn begin(&mut self) {
        match self {
            Self::Postgres(proxy) => proxy.set_down(true),
            Self::Sqlite { url, holder } => {
                use sqlx::Connection;
                let mut conn = sqlx::SqliteConnection::connect(url)
                    .await
                    .expect("second SQLite connection");
                sqlx::query("begin exclusive")
                    .execute(&mut conn)
                    .await
                    .expect("take the write lock");
                *holder = Some(conn);
            }
        }
    }

    async fn end(&mut self) {
        match self {
            Self::Postgres(proxy) => proxy.set_down(false),
            Self::Sqlite { holder, .. } => {
                if let Some(mut conn) = holder.take() {
                    sqlx::query("rollback")
                        .execute(&mut conn)
                        .await
                        .expect("release the write lock");
                }
            }
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

async fn app_with_outage() -> (TestApp, Outage) {
    let mut outage = None;
    let app = spawn_app_with(|s| {
        s.database.connect_timeout = Duration::from_secs(4);
        if s.database.url.starts_with("postgres") {
            let mut url = url::Url::parse(&s.database.url).expect("URL");
            let upstream = format!(
                "{}:{}",
                url.host_str().unwrap_or("127.0.0.1"),
                url.port().unwrap_or(5432)
            );
            let proxy = Proxy::start(upstream);
            url.set_port(Some(proxy.port)).expect("port");
            s.database.url = url.to_string();
            outage = Some(Outage::Postgres(proxy));
        } else {
            outage = Some(Outage::Sqlite {
                url: s.database.url.clone(),
                holder: None,
            });
        }
    })
    .await;
    (app, outage.expect("outage set up"))
}

fn assert_retry_after(response: &reqwest::Response) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| (1..=60).contains(&s)),
        "Retry-After in seconds: {:?}",
        response.headers()
    );
}

#[tokio::test]
async fn a_database_outage_is_answered_with_503_and_retry_after_then_service_resumes() {
    let (app, mut outage) = app_with_outage().await;
    app.create_user("alice", PASSWORD).await;
    let (_, secret) = app.register_client(web_app(false)).await;
    let secret = secret.expect("secret");
    // Everything that needs the database later is fetched now: a code to exchange, a
    // sign-in form to submit, an access token to present.
    let browser = app.new_browser();
    let verifier = pkce();
    let code_1 = code(&app, &browser, &verifier, &[]).await;
    let code_2 = code(&app, &browser, &verifier, &[]).await;
    let form = app.login_form(&app.new_browser()).await;
    let tokens: serde_json::Value = exchange_web(&app, &secret, &code_2, &verifier.verifier)
        .await
        .json()
        .await
        .expect("tokens");
    let access_token = tokens["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let (_, admin_secret) = app
        .register_client(Registration::admin("Ops".into(), Some("ops".into())))
        .await;
    let admin_token = token_for(&app, "ops", &admin_secret.expect("admin secret")).await;

    outage.begin().await;

    // The token endpoint: RFC 6749 §5.2 JSON, `temporarily_unavailable`.
    let token = exchange_web(&app, &secret, &code_1, &verifier.verifier);
    // A browser's sign-in: an error page.
    let login_browser = app.new_browser();
    let login = app.submit_login(&login_browser, &form, "alice", PASSWORD);
    // The admin API: a read on Postgres; on SQLite (where reads go on) a write.
    let admin = if outage.is_postgres() {
        reqwest::Client::new().get(app.url("/admin/v1/clients"))
    } else {
        reqwest::Client::new()
            .post(app.url("/admin/v1/users"))
            .json(&serde_json::json!({ "username": "bob" }))
    };
    let admin = admin.bearer_auth(&admin_token).send();
    let (token, login, admin) = tokio::join!(token, login, admin);

    // An RFC 9457 problem document.
    let admin = admin.expect("admin API request");
    assert_eq!(admin.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_retry_after(&admin);
    assert_eq!(admin.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = admin.json().await.expect("problem");
    assert_eq!(problem["status"], 503, "{problem}");
    assert_eq!(problem["code"], "temporarily_unavailable", "{problem}");

    assert_eq!(token.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_retry_after(&token);
    assert_eq!(token.headers()["cache-control"], "no-store");
    let body: serde_json::Value = token.json().await.expect("JSON error");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body["error_description"].is_string(), "{body}");

    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_retry_after(&login);
    assert!(
        login.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/html"))
    );
    let page = login.text().await.expect("page");
    assert!(page.contains("Temporarily unavailable"), "{page}");

    if outage.is_postgres() {
        // Readiness answers within about a second, not after connect_timeout (4 s).
        let started = Instant::now();
        let ready = app.get(&app.client, "/readyz").await;
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "/readyz took {:?}",
            started.elapsed()
        );
        // A resource server's call: RFC 6750 shape, 503.
        let userinfo = reqwest::Client::new()
            .get(app.url("/userinfo"))
            .bearer_auth(&access_token)
            .send()
            .await
            .expect("GET /userinfo");
        assert_eq!(userinfo.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_retry_after(&userinfo);
        let body: serde_json::Value = userinfo.json().await.expect("JSON error");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    } else {
        // SQLite: reads go on while another process holds the write lock.
        assert_eq!(
            app.get(&app.client, "/readyz").await.status(),
            StatusCode::OK
        );
        let userinfo = reqwest::Client::new()
            .get(app.url("/userinfo"))
            .bearer_auth(&access_token)
            .send()
            .await
            .expect("GET /userinfo");
        assert_eq!(userinfo.status(), StatusCode::OK);
    }

    outage.end().await;

    // Service resumes without a restart: the refused code still works (it was never
    // consumed), a sign-in goes through, readiness is back.
    let mut ready = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        ready = app.get(&app.client, "/readyz").await.status();
        if ready == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, StatusCode::OK);
    let token = exchange_web(&app, &secret, &code_1, &verifier.verifier).await;
    assert_eq!(token.status(), StatusCode::OK);
    app.login_ok(&app.new_browser(), "alice", PASSWORD).await;
}
