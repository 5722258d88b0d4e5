//! `serve` and `serve --demo`.

use std::sync::Arc;

use anyhow::{Context, bail};

use crate::clock::SystemClock;
use crate::config::{Settings, redact_url};
use crate::startup::Application;

pub(super) async fn run(settings: Settings) -> anyhow::Result<()> {
    let bind = settings.server.bind.clone();
    let issuer = settings.issuer.clone();
    let db = redact_url(&settings.database.url);
    let app = Application::build(settings, Arc::new(SystemClock)).await?;
    tracing::info!(%bind, %issuer, database = %db, "portcullis is listening");
    app.run_until_signalled().await?;
    Ok(())
}

/// Development only: the server, a demo user and client, and the example SPA.
pub(super) async fn run_demo(settings: Settings, spa_bind: &str) -> anyhow::Result<()> {
    if std::env::var("PORTCULLIS_ENV").as_deref() == Ok("production") {
        bail!(
            "--demo seeds a user with a published password: never with PORTCULLIS_ENV=production"
        );
    }
    let listener = std::net::TcpListener::bind(spa_bind)
        .with_context(|| format!("binding the demo SPA to {spa_bind}"))?;
    let addr = listener.local_addr()?;
    let demo = crate::demo::DemoApp {
        origin: format!("http://{addr}"),
        issuer: settings.issuer.clone(),
    };
    let issuer = settings.issuer.clone();
    let app = Application::build(settings.clone(), Arc::new(SystemClock)).await?;
    let store = super::db::open(&settings).await?;
    crate::demo::seed(store.as_ref(), &settings, &SystemClock, &demo).await?;
    store.close().await;
    let spa = crate::demo::spa_server(listener, demo.clone())?;
    let spa_handle = spa.handle();
    let spa_task = tokio::spawn(spa);
    println!(
        "\nPortcullis demo\n  provider:   {issuer}\n  demo app:   {}   <- open this and click \"Sign in\"\n  sign in as: {} / {}\n",
        demo.origin,
        crate::demo::DEMO_USERNAME,
        crate::demo::DEMO_PASSWORD
    );
    tracing::info!(%issuer, spa = %demo.origin, "portcullis demo is listening");
    let result = app.run_until_signalled().await;
    spa_handle.stop(true).await;
    spa_task.abort();
    result?;
    Ok(())
}
