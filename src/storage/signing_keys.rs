//! Signing keys: their lifecycle (next, current, retired) and re-encryption under a new
//! master key.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{KeyChangeListener, ReencryptedSecret, StoreError};
use crate::audit::AuditEvent;
use crate::domain::jws::SigningAlg;
use crate::domain::signing_key::{KeyState, Stored};

/// A signing key as stored: the private half only ever encrypted under the master key.
#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// `Unknown` only for a row a newer version wrote (see `Stored`).
    pub alg: Stored<SigningAlg>,
    pub state: Stored<KeyState>,
    pub encrypted_private_key: Vec<u8>,
    pub public_jwk: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub activated_at: Option<OffsetDateTime>,
    pub retired_at: Option<OffsetDateTime>,
    pub remove_after: Option<OffsetDateTime>,
}

/// Retires one signing key and, when it was the current key of its algorithm, promotes
/// the oldest `next` key (or, without one, `fresh[0]`) and inserts a fresh `next`, all in
/// one transaction. Keys whose `remove_after` has passed are deleted on the way.
#[derive(Debug)]
pub struct KeyRetirement<'a> {
    pub kid: &'a str,
    /// A scheduled or manual rotation: retire `kid` only if it is still current (compare
    /// and swap), otherwise `LostRace`. An emergency retirement retires it in any state.
    pub only_if_current: bool,
    /// With `only_if_current`: the encrypted private key the caller loaded. If the row
    /// holds another blob (re-encrypted by a master-key rotation), `LostRace`: a ring still
    /// holding the old master key must not add keys encrypted under it.
    pub expected_private_key: Option<&'a [u8]>,
    pub now: OffsetDateTime,
    /// When the retired key stops verifying and leaves the JWKS.
    pub remove_after: OffsetDateTime,
    /// Freshly generated keys (their `state` and `activated_at` are set here): the first
    /// becomes `next` (or `current` when no `next` exists, the second then `next`).
    pub fresh: &'a [SigningKeyRecord],
    pub audit: &'a AuditEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retired {
    Retired {
        /// The state the key was in before.
        previous_state: Stored<KeyState>,
        /// The key that became current, when the retired one was current.
        promoted: Option<String>,
        /// The key inserted as next, if any.
        next: Option<String>,
        /// How many keys past `remove_after` were deleted.
        deleted: u64,
    },
    /// `only_if_current` and the key is no longer current: another rotation won.
    LostRace,
    NotFound,
}

/// One private key re-encrypted under a new master key (see `reencrypt_signing_keys`).
#[derive(Debug)]
pub struct ReencryptedKey {
    pub kid: String,
    /// The blob as read: the update applies only if the row still holds it.
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

/// The `signing_keys` table; every change is announced to the other instances.
#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Every stored signing key, oldest first.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// `Conflict` when the key's algorithm already has a current key (instances racing
    /// to create the first key: one wins, the others reload).
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Rotation and emergency retirement, in one transaction (see `KeyRetirement`).
    async fn retire_signing_key(&self, r: &KeyRetirement<'_>) -> Result<Retired, StoreError>;
    /// A master-key rotation: every private key and every sealed second-factor secret
    /// re-encrypted in one transaction with its audit row. `Conflict` when the set of keys
    /// or factors, or any stored blob, is not what the caller read (a rotation or an
    /// enrollment meanwhile); nothing is written then.
    async fn reencrypt_signing_keys(
        &self,
        keys: &[ReencryptedKey],
        secrets: &[ReencryptedSecret],
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Deletes retired keys whose `remove_after` has passed; returns how many.
    async fn purge_removed_signing_keys(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
    /// Postgres: a listener for the notification every change to `signing_keys` sends in
    /// its transaction. `None` on SQLite (single node: nothing else changes the keys while
    /// the server runs but the CLI, which the interval reload covers).
    async fn listen_key_changes(&self) -> Result<Option<KeyChangeListener>, StoreError>;
}
