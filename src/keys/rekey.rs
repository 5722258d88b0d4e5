//! Master-key rotation: every private signing key re-encrypted under a new master key, in
//! one transaction with its audit row.

use secrecy::{ExposeSecret as _, SecretSlice};
use serde::Serialize;
use time::OffsetDateTime;

use super::{KeyError, MasterKey};
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::mfa::factor_secret_aad;
use crate::storage::{ReencryptedKey, ReencryptedSecret, Store, StoreError};

/// What `rotate_master_key` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MasterKeyRotation {
    /// The keys now encrypted under the new master key (all of them).
    pub reencrypted: Vec<String>,
}

/// Decrypts every stored private key with `current` and encrypts it with `new` (fresh
/// nonce, the kid as associated data, as at creation). All or nothing: a key `current`
/// cannot decrypt stops it before anything is written (`MasterKeyMismatch`), and so does
/// a change to the key set meanwhile (`KeysChanged`).
pub async fn rotate_master_key(
    store: &dyn Store,
    current: &MasterKey,
    new: &MasterKey,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<MasterKeyRotation, KeyError> {
    if current == new {
        return Err(KeyError::BadMasterKey(
            "the new master key is the one in use".to_owned(),
        ));
    }
    let mut keys = Vec::new();
    for record in store.list_signing_keys().await? {
        let sealed = reseal(
            current,
            new,
            &record.encrypted_private_key,
            record.kid.as_bytes(),
        )?;
        keys.push(ReencryptedKey {
            kid: record.kid,
            old: record.encrypted_private_key,
            new: sealed,
        });
    }
    let mut secrets = Vec::new();
    for (factor, old) in store.list_factor_secrets().await? {
        let aad = factor_secret_aad(factor);
        let sealed = reseal(current, new, &old, aad.as_bytes())?;
        secrets.push(ReencryptedSecret {
            factor,
            old,
            new: sealed,
        });
    }
    let reencrypted: Vec<String> = keys.iter().map(|k| k.kid.clone()).collect();
    let audit = AuditEvent::new(now, AuditKind::MasterKeyRotated, Outcome::Success, actor)
        .detail("reencrypted", reencrypted.len())
        .detail("kids", reencrypted.clone())
        .detail("factor_secrets", secrets.len());
    match store.reencrypt_signing_keys(&keys, &secrets, &audit).await {
        Ok(()) => Ok(MasterKeyRotation { reencrypted }),
        Err(StoreError::Conflict(_)) => Err(KeyError::KeysChanged),
        Err(e) => Err(e.into()),
    }
}

/// `blob` opened with `current` and sealed with `new` (fresh nonce, same associated data).
fn reseal(
    current: &MasterKey,
    new: &MasterKey,
    blob: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let plain = SecretSlice::from(current.decrypt(blob, aad)?);
    let sealed = new.encrypt(plain.expose_secret(), aad)?;
    // Never write what the new key cannot read back.
    let check = SecretSlice::from(new.decrypt(&sealed, aad)?);
    if check.expose_secret() != plain.expose_secret() {
        return Err(KeyError::Crypto(
            "re-encryption did not round-trip".to_owned(),
        ));
    }
    Ok(sealed)
}
