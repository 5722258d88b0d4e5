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

use crate::storage::StoreError;

pub use jwt::Expectations;
pub use master::MasterKey;
pub use ring::KeyRing;

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
