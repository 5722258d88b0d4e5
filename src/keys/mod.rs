//! Signing keys: the master key that encrypts them at rest, the in-memory key ring every
//! request signs and verifies with, the published JWKS, and the periodic reload that makes
//! a rotation on one instance visible on all.

mod jwt;
mod master;
mod material;
mod ring;

#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::config::Settings;
use crate::storage::StoreError;

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

pub use jwt::Expectations;
pub use master::MasterKey;
pub use ring::{KeyRing, RetireOutcome, RotationDue, RotationOutcome};

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
    #[error("no current signing key")]
    NoSigningKey,
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

/// Rotates the signing key on schedule: every `every`, if the current key was activated
/// `keys.rotation_interval` ago and the next key has been published for
/// `keys.prepublication`. Losing the race to another instance is fine.
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
        };
        loop {
            ticks.tick().await;
            let result = match ring.rotation_due(rotation_interval, prepublication) {
                RotationDue::No | RotationDue::Waiting => Ok(()),
                RotationDue::NeedsNext => ring.ensure_next().await,
                RotationDue::Yes => ring.rotate_by(&actor).await.map(|_| ()),
            };
            if let Err(error) = result {
                tracing::warn!(%error, "scheduled signing key rotation failed");
            }
        }
    })
}
