//! `spawn_app()`: the server on a random port, on a thread and runtime of its own, with a
//! database of its own (`TEST_DB=postgres|sqlite`), a mock clock and captured logs; the
//! `TestApp` handle with its seeding and inspecting helpers.

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::dev::ServerHandle;
use portcullis::audit::{Actor, AuditEvent, AuditKind, AuditQuery, AuditRecord, Outcome};
use portcullis::clock::MockClock;
use portcullis::config::{LogFormat, LogSettings, Settings};
use portcullis::domain::user::{NewUser, Password, User, Username};
use portcullis::password::PasswordHasher;
use portcullis::startup::Application;
use portcullis::storage::{self, Store};
use reqwest::Client;
use uuid::Uuid;

use super::browser;

/// Everything every test's server logged, for the "no secrets in logs" checks.
pub fn captured_logs() -> String {
    let buf = log_buffer().lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&buf).into_owned()
}

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

#[derive(Clone, Copy)]
struct CaptureWriter;

impl Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        log_buffer()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let settings = LogSettings {
            // Verbose on purpose: secrets must not appear even at debug level.
            level: "debug,h2=info,hyper=info,reqwest=info,actix_server=info,mio=info".into(),
            format: LogFormat::Json,
        };
        let subscriber = portcullis::telemetry::subscriber(&settings, || CaptureWriter);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

pub enum Backend {
    /// The directory is deleted when the test ends.
    Sqlite(#[expect(dead_code, reason = "held for its Drop")] tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
}

/// A database of its own for one test; dropped with it.
pub struct TestDatabase {
    pub url: String,
    backend: Backend,
}

impl TestDatabase {
    pub async fn create() -> Self {
        match std::env::var("TEST_DB").as_deref() {
            Ok("postgres") => Self::postgres().await,
            Ok("sqlite") | Err(_) => Self::sqlite(),
            Ok(other) => panic!("TEST_DB must be postgres or sqlite, not {other}"),
        }
    }

    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/portcullis.db", dir.path().display());
        Self {
            url,
            backend: Backend::Sqlite(dir),
        }
    }

    async fn postgres() -> Self {
        use sqlx::Connection;
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("test_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        sqlx::query(&format!("create database \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            url: url.to_string(),
            backend: Backend::Postgres { admin_url, name },
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Backend::Postgres { admin_url, name } = &self.backend {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ = sqlx::query(&format!(
                            "drop database if exists \"{name}\" with (force)"
                        ))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    /// Holds the master key file.
    pub keydir: Arc<tempfile::TempDir>,
    pub address: String,
    pub port: u16,
    pub clock: MockClock,
    pub settings: Settings,
    /// A browser: keeps cookies, never follows redirects, sends our Origin on posts.
    pub client: Client,
    /// A separate connection for seeding and inspecting.
    pub store: Arc<dyn Store>,
    pub db: Arc<TestDatabase>,
    /// The metrics listener's port, when `server.metrics_bind` was set.
    pub metrics_port: Option<u16>,
    handle: ServerHandle,
}

/// Test settings: defaults, a fresh database, one worker, and the issuer on our port.
pub fn test_settings(db_url: &str) -> Settings {
    let mut s = Settings::defaults().expect("default settings");
    s.database.url = db_url.to_owned();
    s.database.max_connections = 4;
    s.server.workers = 1;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let db = Arc::new(TestDatabase::create().await);
    let keydir = Arc::new(tempfile::tempdir().expect("key dir"));
    let mut settings = test_settings(&db.url);
    let key_file = keydir.path().join("master.key");
    let key: [u8; 32] = rand::random();
    std::fs::write(
        &key_file,
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key),
    )
    .expect("master key");
    settings.keys.master_key_file = key_file.display().to_string();
    settings.keys.generate_master_key = false;
    configure(&mut settings);
    launch(db, keydir, settings, MockClock::starting_now()).await
}

async fn launch(
    db: Arc<TestDatabase>,
    keydir: Arc<tempfile::TempDir>,
    mut settings: Settings,
    clock: MockClock,
) -> TestApp {
    init_logging();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a random port");
    let port = listener.local_addr().expect("local addr").port();
    let scheme = if settings.issuer.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    // A test that set the issuer to `localhost` keeps that name (WebAuthn needs a domain
    // as the relying party id); the server is still reached at 127.0.0.1.
    let host = if settings.issuer.contains("://localhost") {
        "localhost"
    } else {
        "127.0.0.1"
    };
    settings.issuer = format!("{scheme}://{host}:{port}");
    let settings = settings.validated().expect("valid test settings");
    let (handle, metrics_port) = run_on_own_thread(settings.clone(), clock.clone(), listener).await;
    let store = storage::connect(&settings.database)
        .await
        .expect("test store");
    TestApp {
        keydir,
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: browser(&format!("{scheme}://{host}:{port}")),
        clock,
        settings,
        store,
        db,
        metrics_port,
        handle,
    }
}

/// Builds and runs the application on a thread and runtime of its own, as a separate
/// server process would: its database connections, background tasks and I/O never depend
/// on the test's (single-threaded) runtime, so a test that blocks — waiting for a CLI
/// child process, say — cannot stall the server it is talking to (or leave it holding a
/// lock that child needs). Returns once the server is listening.
async fn run_on_own_thread(
    settings: Settings,
    clock: MockClock,
    listener: TcpListener,
) -> (ServerHandle, Option<u16>) {
    let (ready, started) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("portcullis-under-test".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let app =
                    match Application::build_with_listener(settings, Arc::new(clock), listener)
                        .await
                    {
                        Ok(app) => app,
                        Err(e) => {
                            let _ = ready.send(Err(format!("{e:#}")));
                            return;
                        }
                    };
                if ready.send(Ok((app.handle(), app.metrics_port()))).is_ok() {
                    let _ = app.run_until_stopped().await;
                }
            });
        })
        .expect("server thread");
    match started.await {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => panic!("build the application: {e}"),
        Err(_) => panic!("the server thread ended before it was ready"),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn create_user(&self, username: &str, password: &str) -> User {
        self.create_user_named(username, None, password).await
    }

    pub async fn create_user_named(
        &self,
        username: &str,
        name: Option<&str>,
        password: &str,
    ) -> User {
        let hasher = PasswordHasher::new(&self.settings.password).expect("hasher");
        let hash = hasher
            .hash(Password::presented(password.into()).expect("password"))
            .await
            .expect("hash");
        let now = time::OffsetDateTime::now_utc();
        let audit = AuditEvent::new(now, AuditKind::UserCreated, Outcome::Success, &Actor::cli());
        self.store
            .create_user(
                &NewUser {
                    username: Username::parse(username).expect("username"),
                    email: Some(format!("{username}@example.com")),
                    name: name.map(str::to_owned),
                    password_hash: Some(hash),
                },
                now,
                &audit,
            )
            .await
            .expect("create user")
    }

    /// Registers a client; returns it with its secret (confidential clients).
    pub async fn register_client(
        &self,
        reg: portcullis::clients::Registration,
    ) -> (portcullis::domain::client::Client, Option<String>) {
        let (client, secret) = portcullis::clients::register(
            self.store.as_ref(),
            reg,
            time::OffsetDateTime::now_utc(),
            &Actor::cli(),
        )
        .await
        .expect("register client");
        (client, secret.map(|s| s.expose().to_owned()))
    }

    pub async fn audit(&self, kind: &str) -> Vec<AuditRecord> {
        self.store
            .list_audit(&AuditQuery {
                kind: Some(kind.into()),
                user_id: None,
                limit: 1000,
            })
            .await
            .expect("audit rows")
    }

    /// The second-factor service over this app's database and master key, as the server
    /// has it.
    pub fn factors(&self) -> portcullis::auth::Factors {
        let key =
            std::fs::read_to_string(&self.settings.keys.master_key_file).expect("master key file");
        let master = portcullis::keys::MasterKey::from_base64(key.trim()).expect("master key");
        portcullis::auth::Factors::new(Arc::clone(&self.store), master, &self.settings.issuer)
    }

    pub async fn session_count(&self, user: &User) -> usize {
        self.store
            .list_sessions(user.id, portcullis::clock::Clock::now(&self.clock))
            .await
            .expect("sessions")
            .len()
    }

    /// Stops this server and starts a new one on the same database and clock.
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// As `restart`, with changed settings.
    pub async fn restart_with(self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        let (db, keydir, mut settings, clock) = (
            Arc::clone(&self.db),
            Arc::clone(&self.keydir),
            self.settings.clone(),
            self.clock.clone(),
        );
        configure(&mut settings);
        self.handle.stop(true).await;
        drop(self);
        launch(db, keydir, settings, clock).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // `stop` sends its command at once; the server winds down on its own threads.
        drop(self.handle.stop(false));
    }
}
