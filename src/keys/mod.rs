//! Signing keys: the master key that encrypts them at rest (`master.rs`), the in-memory key
//! ring (`ring.rs`) with what signs and verifies now and the published JWKS
//! (`snapshot.rs`), the rotation lifecycle (`rotation.rs`), and the reload that makes a
//! rotation on one instance visible on all.

mod info;
mod jwt;
mod master;
mod material;
mod rekey;
mod ring;
mod rotation;
mod snapshot;

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

pub use info::{KeyInfo, list};
pub use jwt::Expectations;
pub use master::MasterKey;
pub use rekey::{MasterKeyRotation, rotate_master_key};
pub use ring::{KeyRing, spawn_listener, spawn_reloader};
pub use rotation::{RetireOutcome, RotationDue, RotationOutcome, Successor, spawn_rotator};
pub use snapshot::AlgStatus;

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
