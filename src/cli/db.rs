//! Opening the configured database for a command, and `migrate`.

use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use super::emit;
use crate::config::{Settings, redact_url};
use crate::storage::{self, Store};

/// `migrate`: apply pending migrations and exit.
pub(super) async fn migrate(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let store = open(settings).await?;
    store.migrate().await.context("applying migrations")?;
    store.close().await;
    emit(json, &json!({ "migrated": true }), "Migrations applied.");
    Ok(())
}

pub(super) async fn open(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    storage::connect(&settings.database)
        .await
        .with_context(|| format!("opening {}", redact_url(&settings.database.url)))
}

/// Runs an administration command on the migrated database, then closes it.
pub(super) async fn with_store(
    settings: &Settings,
    command: impl AsyncFnOnce(&Arc<dyn Store>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let store = open(settings).await?;
    store.migrate().await.context("applying migrations")?;
    let result = command(&store).await;
    store.close().await;
    result
}
