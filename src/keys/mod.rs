//! Signing keys: the master key that encrypts them at rest, the in-memory key ring every
//! request signs and verifies with, the published JWKS, and the periodic reload that makes
//! a rotation on one instance visible on all.

mod info;
mod jwt;
mod master;
mod material;
mod rekey;
mod ring;

#[cfg(test)]
mod tests;

use std::time::Duration;

use std::sync::Arc;

use crate::config::Settings;
use crate::storage::{Store, StoreError};

/// The clock skew allowed when verifying tokens, also kept as a margin before a retired
/// key is removed.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How long a retired key stays published: the longest token lifetime plus clock skew,
/// so every token it signed expires before it goes.
pub fn retention(settings: &Settings) -> Duration {
    settings
        .tokens
        .access_token_lifetime
        .max(settings.tokens.id_token_lifetime)
        + CLOCK_SKEW
}

pub use info::{KeyInfo, list};
pub use jwt::Expectations;
pub use master::MasterKey;
pub use rekey::{MasterKeyRotation, rotate_master_key};
pub use ring::{AlgStatus, KeyRing, RetireOutcome, RotationDue, RotationOutcome, Successor};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    NoMasterKey(String),
    /// Decryption failed: a different master key, a blob moved to another row, or tampering.
    #[error("the master key does not match the one the signing keys were encrypted with")]
    MasterKeyMismatch,
    #[error("bad master key: {0}")]
    BadMasterKey(String),
    #[error("signing key storage: {0}")]
    Store(#[from] StoreError),
    #[error("signing key error: {0}")]
    Crypto(String),
    #[error("no current {0} signing key")]
    NoSigningKey(crate::domain::jws::SigningAlg),
    #[error("{0} is not one of keys.algorithms")]
    AlgorithmNotEnabled(crate::domain::jws::SigningAlg),
    #[error(
        "the signing keys changed while they were re-encrypted; nothing was written: run it again"
    )]
    KeysChanged,
    #[error(
        "{0} is in keys.algorithms: its keys are always replaced; remove it from \
         keys.algorithms (on every instance) before retiring them without a successor"
    )]
    StillConfigured(crate::domain::jws::SigningAlg),
    /// A token failed verification. The reason is for logs, never for the client.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
}

/// Reloads the key set every `every`, so rotations made elsewhere show up here. A failed
/// reload keeps the previous set and is logged; the task never ends on its own.
pub fn spawn_reloader(ring: KeyRing, every: Duration) -> tokio::task::JoinHandle<()> {
    // `interval` panics on a zero period.
    let every = every.max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = ring.reload().await {
                tracing::warn!(%error, "reloading the signing keys failed; keeping the previous set");
            }
        }
    })
}

/// Backoff between attempts to (re)connect the key-change listener.
const LISTEN_RETRY_MIN: Duration = Duration::from_secs(1);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(60);

/// Postgres: reloads the key set as soon as any instance or the CLI changes it (every
/// change sends `NOTIFY portcullis_keys` in its transaction), so a rotation is visible
/// everywhere within moments; the interval reload stays as the fallback. The listener
/// reconnects with exponential backoff and reloads after every (re)connection, since
/// notifications sent while it was away are lost. Failures are logged; the task never ends
/// on its own. On SQLite (one node) it ends at once.
pub fn spawn_listener(ring: KeyRing, store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = LISTEN_RETRY_MIN;
        loop {
            let mut listener = match store.listen_key_changes().await {
                Ok(Some(listener)) => listener,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot listen for signing key changes");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(LISTEN_RETRY_MAX);
                    continue;
                }
            };
            tracing::debug!("listening for signing key changes");
            backoff = LISTEN_RETRY_MIN;
            loop {
                if let Err(error) = ring.reload().await {
                    tracing::warn!(%error, "reloading the signing keys failed; keeping the previous set");
                }
                match listener.changed().await {
                    Ok(true) => {}
                    Ok(false) => tracing::info!("the key-change listener reconnected; reloading"),
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?backoff, "the key-change listener failed; reconnecting");
                        break;
                    }
                }
            }
            drop(listener);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(LISTEN_RETRY_MAX);
        }
    })
}

/// Rotates the signing keys on schedule: every `every`, each configured algorithm whose
/// current key was activated `keys.rotation_interval` ago and whose next key has been
/// published for `keys.prepublication`. Losing the race to another instance is fine.
pub fn spawn_rotator(
    ring: KeyRing,
    rotation_interval: Duration,
    prepublication: Duration,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let every = every.max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let actor = crate::audit::Actor {
            ip: None,
            request_id: Some("scheduler".into()),
            client_id: None,
        };
        loop {
            ticks.tick().await;
            for &alg in ring.configured_algorithms() {
                let result = match ring.rotation_due(alg, rotation_interval, prepublication) {
                    RotationDue::No | RotationDue::Waiting => Ok(()),
                    RotationDue::NeedsNext => ring.ensure_next(alg).await,
                    RotationDue::NeedsCurrent => ring.ensure_current(alg).await,
                    RotationDue::Yes => ring.rotate_alg_by(alg, &actor).await.map(|_| ()),
                };
                if let Err(error) = result {
                    tracing::warn!(%error, %alg, "scheduled signing key rotation failed");
                }
            }
        }
    })
}
