//! Builds the server from settings; used by `main` and by the integration tests.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::admin::AdminState;
use crate::app::{AppState, CookieNames, OriginCache};
use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::config::Settings;
use crate::http::handlers::not_found;
use crate::http::middleware::{
    OnRuntime, RequestContext, close_while_draining, security_headers, track,
};
use crate::http::routes;
use crate::keys::{KeyRing, MasterKey, spawn_listener, spawn_reloader, spawn_rotator};
use crate::oauth::Provider;
use crate::password::PasswordHasher;
use crate::shutdown::{Draining, Shutdown, Signals};
use crate::storage::{self, PurgeCutoffs, Store};

pub struct Application {
    port: u16,
    server: Server,
    /// The metrics listener (`server.metrics_bind`) and its port.
    metrics: Option<(Server, u16)>,
    store: Arc<dyn Store>,
    background: Vec<tokio::task::JoinHandle<()>>,
    draining: Draining,
    drain_delay: std::time::Duration,
}

impl Application {
    /// Connects to the database (migrating if configured), and binds `server.bind`.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&settings.server.bind)
            .with_context(|| format!("binding {}", settings.server.bind))?;
        Self::build_with_listener(settings, clock, listener).await
    }

    /// As `build`, on an already bound listener (tests bind port 0 first, so the issuer
    /// can name the port).
    pub async fn build_with_listener(
        settings: Settings,
        clock: Arc<dyn Clock>,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let store = storage::connect(&settings.database)
            .await
            .context("connecting to the database")?;
        if settings.database.migrate_on_start {
            store.migrate().await.context("applying migrations")?;
        }
        let hasher = PasswordHasher::new(&settings.password).context("password hasher")?;
        let master = MasterKey::load(&settings.keys).context("loading the master key")?;
        let throttle_keys = master
            .throttle_keys()
            .context("deriving the throttle key")?;
        let factor_master = master.duplicate();
        let keys =
            KeyRing::load_or_init_for(Arc::clone(&store), master, Arc::clone(&clock), &settings)
                .await
                .context("loading the signing keys")?;
        // Postgres tells every instance of a key change at once (NOTIFY). SQLite has no
        // such channel, and the only other writer is the CLI next to the server: re-read
        // the (small) key table often instead, so a `keys rotate|retire` there reaches the
        // server within a second. A reload reuses the keys it already parsed.
        let reload_every = match store.backend() {
            storage::Backend::Sqlite => settings.keys.reload_interval.min(SQLITE_KEY_CHECK),
            storage::Backend::Postgres => settings.keys.reload_interval,
        };
        let reloader = spawn_reloader(keys.clone(), reload_every);
        let key_listener = spawn_listener(keys.clone(), Arc::clone(&store));
        let rotator = spawn_rotator(
            keys.clone(),
            settings.keys.rotation_interval,
            settings.keys.prepublication,
            settings.keys.reload_interval,
        );
        let auth = Authenticator::new(
            &settings,
            Arc::clone(&store),
            Arc::clone(&clock),
            hasher,
            throttle_keys,
            factor_master,
        );
        let provider = Provider::new(&settings, auth.clone(), keys.clone());
        let draining = Draining::default();
        let state = AppState {
            cookies: CookieNames::new(settings.is_https()),
            issuer_origin: settings.issuer_origin(),
            settings: Arc::new(settings.clone()),
            auth,
            provider,
            origins: Arc::new(OriginCache::new(Arc::clone(&store))),
            metrics: Arc::default(),
            draining: draining.clone(),
        };
        let https = settings.is_https();
        let port = listener.local_addr()?.port();
        let data = web::Data::new(state);
        let admin = web::Data::new(AdminState::default());
        let metrics = if settings.server.metrics_bind.is_empty() {
            None
        } else {
            let bind = &settings.server.metrics_bind;
            let listener = TcpListener::bind(bind)
                .with_context(|| format!("binding server.metrics_bind {bind}"))?;
            let port = listener.local_addr()?.port();
            let data = data.clone();
            // Only `GET /metrics` here; the public listener never serves it.
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .wrap(security_headers(https))
                    .route(
                        "/metrics",
                        web::get().to(crate::http::handlers::metrics::scrape),
                    )
                    .default_service(web::to(not_found))
            })
            .listen(listener)?
            .workers(1)
            .shutdown_timeout(settings.server.shutdown_timeout.as_secs())
            .disable_signals()
            .run();
            Some((server, port))
        };
        // Requests run with this (the main) runtime as the current one: see `OnRuntime`.
        let runtime = tokio::runtime::Handle::current();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(admin.clone())
                .wrap(security_headers(https))
                .wrap(RequestContext)
                .wrap(actix_web::middleware::from_fn(track))
                .wrap(actix_web::middleware::from_fn(close_while_draining))
                .wrap_fn({
                    let runtime = runtime.clone();
                    move |req, srv| {
                        OnRuntime::new(runtime.clone(), actix_web::dev::Service::call(srv, req))
                    }
                })
                .configure(routes::configure)
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        .shutdown_timeout(settings.server.shutdown_timeout.as_secs())
        // Signals are ours (`run_until_signalled`): readiness must fail before the
        // listener closes.
        .disable_signals();
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.run();
        let drain_delay = settings.server.drain_delay;
        let housekeeping = tokio::spawn(housekeeping(Arc::clone(&store), clock, settings, keys));
        Ok(Self {
            port,
            server,
            metrics,
            store,
            background: vec![housekeeping, reloader, key_listener, rotator],
            draining,
            drain_delay,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the metrics listener, when `server.metrics_bind` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Drains and stops this server gracefully (see `crate::shutdown`).
    pub fn shutdown(&self) -> Shutdown {
        Shutdown {
            draining: self.draining.clone(),
            server: self.server.handle(),
            drain_delay: self.drain_delay,
        }
    }

    /// Serves until a signal stops the server: the first SIGTERM or SIGINT drains it
    /// (`Shutdown::drain`), SIGQUIT or a second signal stops it at once.
    pub async fn run_until_signalled(self) -> anyhow::Result<()> {
        let signals = Signals::register().context("listening for stop signals")?;
        let shutdown = self.shutdown();
        self.run_until(shutdown.on_signals(signals)).await?;
        Ok(())
    }

    /// Serves until the server is stopped through its handle.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until the server stops, or until `stop_now` completes (the server is then
    /// dropped: its listener closes and its workers stop without waiting); then stops
    /// the metrics listener and closes the pools in this runtime, once no request
    /// holds a connection any more.
    async fn run_until(self, stop_now: impl Future<Output = ()>) -> std::io::Result<()> {
        let metrics = self.metrics.map(|(server, _)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let result = tokio::select! {
            result = self.server => result,
            () = stop_now => Ok(()),
        };
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        for task in &self.background {
            task.abort();
        }
        self.store.close().await;
        tracing::info!("stopped");
        result
    }
}

/// How often a server on SQLite re-reads its signing keys (see `build_with_listener`).
const SQLITE_KEY_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// What one housekeeping round may delete at `now`.
pub fn purge_cutoffs(settings: &Settings, now: time::OffsetDateTime) -> PurgeCutoffs {
    let d = |s: std::time::Duration| time::Duration::try_from(s).unwrap_or(time::Duration::MAX);
    let retention = settings.housekeeping.audit_retention;
    PurgeCutoffs {
        now,
        // A day: longer than any access token lives (at most an hour, see config).
        ended_before: now - time::Duration::days(1),
        throttle_before: now - d(settings.login.failure_window),
        audit_before: (!retention.is_zero()).then(|| now - d(retention)),
    }
}

/// Purges expired rows in bounded batches, off the request path, and retired signing keys
/// past `remove_after`.
async fn housekeeping(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    keys: KeyRing,
) {
    let h = &settings.housekeeping;
    // The first round runs one interval after start, not during it: start-up stays
    // quick, and a write transaction of ours is never open while something else (a CLI
    // run next to a fresh server) needs the SQLite write lock.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + h.interval, h.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = keys.purge_removed().await {
            tracing::warn!(%error, "deleting removed signing keys failed");
        }
        let cutoffs = purge_cutoffs(&settings, clock.now());
        // Rounds until every table is caught up (a batch comes back short), within a
        // time budget, then wait for the next tick.
        let budget =
            std::time::Instant::now() + h.interval.min(std::time::Duration::from_secs(60)) / 2;
        while std::time::Instant::now() < budget {
            match store.purge_expired(&cutoffs, h.batch_size).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(purged = n, "housekeeping");
                    }
                    if n == 0 {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "housekeeping failed");
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
    }
}
