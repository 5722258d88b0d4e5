//! What signs and verifies now: the key states, the loaded keys, and an immutable snapshot
//! of the published keys (each algorithm's current key, and the JWKS, RFC 7517 §5) built
//! from the stored rows, swapped whole on reload, so signing and verification only ever
//! take a read lock for an `Arc` clone. Imports nothing from `ring.rs`, which holds it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix_web::web::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::jwt::{self, Expectations, MAX_TOKEN_LEN};
use super::material::PrivateKey;
use super::{KeyError, MasterKey};
use crate::domain::jws::SigningAlg;
pub(super) use crate::domain::signing_key::KeyState;
use crate::storage::SigningKeyRecord;

/// The algorithm every deployment signs with (OIDC Core §15.1 requires RS256); access
/// tokens are always signed with it.
pub(super) const DEFAULT_ALG: SigningAlg = SigningAlg::RS256;

/// jsonwebtoken's name for the algorithm a key is pinned to.
fn jwt_algorithm(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::RS256 => Algorithm::RS256,
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::EdDSA => Algorithm::EdDSA,
    }
}

/// One algorithm's signing state (see `KeyRing::alg_status`).
#[derive(Debug, Clone)]
pub struct AlgStatus {
    pub alg: SigningAlg,
    pub has_current: bool,
    /// When the current key became current (unknown for a row without `activated_at`).
    pub current_since: Option<OffsetDateTime>,
    pub published: usize,
}

/// One decrypted key. Shared between snapshots while its row is unchanged, so a reload of
/// an unchanged set does no cryptography.
pub(super) struct LoadedKey {
    pub(super) kid: String,
    pub(super) alg: SigningAlg,
    /// What it was built from, to recognise the same row on the next reload.
    pub(super) encrypted_private_key: Vec<u8>,
    public_jwk: serde_json::Value,
    /// Rebuilt from the private key, never copied from the stored column.
    published_jwk: serde_json::Value,
    private: PrivateKey,
    decoding: DecodingKey,
    /// Pinned to the key's algorithm; time and audience are checked by `jwt::check_claims`
    /// against the injected clock, so jsonwebtoken never reads the system time.
    validation: Validation,
}

impl LoadedKey {
    fn is_built_from(&self, record: &SigningKeyRecord) -> bool {
        self.kid == record.kid
            && record.alg == self.alg
            && self.encrypted_private_key == record.encrypted_private_key
            && self.public_jwk == record.public_jwk
    }
}

pub(super) struct PublishedKey {
    pub(super) key: Arc<LoadedKey>,
    /// Retired keys stop verifying at this instant even before the next reload.
    remove_after: Option<OffsetDateTime>,
}

/// The signing state of one algorithm.
#[derive(Default)]
pub(super) struct AlgKeys {
    pub(super) current: Option<Arc<LoadedKey>>,
    pub(super) current_activated_at: Option<OffsetDateTime>,
    /// When the oldest next key was created (published).
    pub(super) next_created_at: Option<OffsetDateTime>,
}

pub(super) struct Snapshot {
    pub(super) published: HashMap<String, PublishedKey>,
    /// Every algorithm with a current or next key in the database.
    pub(super) by_alg: BTreeMap<SigningAlg, AlgKeys>,
    jwks: Bytes,
}

impl Snapshot {
    pub(super) fn empty() -> Self {
        Self {
            published: HashMap::new(),
            by_alg: BTreeMap::new(),
            jwks: Bytes::from_static(br#"{"keys":[]}"#),
        }
    }

    pub(super) fn current(&self, alg: SigningAlg) -> Option<&Arc<LoadedKey>> {
        self.by_alg.get(&alg).and_then(|k| k.current.as_ref())
    }

    pub(super) fn next_created_at(&self, alg: SigningAlg) -> Option<OffsetDateTime> {
        self.by_alg.get(&alg).and_then(|k| k.next_created_at)
    }

    /// The snapshot of `records` at `now`, decrypted under `master`. Keys whose rows are
    /// unchanged since `previous` are shared with it, not decrypted again.
    pub(super) fn build(
        records: &[SigningKeyRecord],
        previous: &Snapshot,
        master: &MasterKey,
        now: OffsetDateTime,
    ) -> Result<Snapshot, KeyError> {
        let mut published = HashMap::new();
        let mut jwks = Vec::new();
        let mut by_alg: BTreeMap<SigningAlg, AlgKeys> = BTreeMap::new();

        for record in records {
            let Some(state) = record.state.known() else {
                tracing::warn!(kid = %record.kid, state = %record.state, "skipping a signing key in an unknown state");
                continue;
            };
            let Some(alg) = record.alg.known() else {
                tracing::warn!(kid = %record.kid, alg = %record.alg, "skipping a signing key with an unsupported algorithm");
                continue;
            };
            // An emergency retirement sets remove_after to the retirement instant: gone
            // at once whatever this instance's clock says.
            if state == KeyState::Retired
                && record
                    .remove_after
                    .is_some_and(|t| t <= now || record.retired_at.is_some_and(|r| t <= r))
            {
                continue;
            }
            let reused = previous
                .published
                .get(&record.kid)
                .map(|p| &p.key)
                .filter(|k| k.is_built_from(record))
                .cloned();
            let key = match reused {
                Some(key) => key,
                None => Arc::new(load_key(master, record, alg)?),
            };
            let keys = by_alg.entry(alg).or_default();
            if state == KeyState::Current
                && (keys.current.is_none() || record.activated_at > keys.current_activated_at)
            {
                keys.current = Some(Arc::clone(&key));
                keys.current_activated_at = record.activated_at;
            }
            if state == KeyState::Next && keys.next_created_at.is_none_or(|t| record.created_at < t)
            {
                keys.next_created_at = Some(record.created_at);
            }
            jwks.push(key.published_jwk.clone());
            let remove_after = if state == KeyState::Retired {
                record.remove_after
            } else {
                None
            };
            published.insert(record.kid.clone(), PublishedKey { key, remove_after });
        }

        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": jwks }))
            .map_err(|e| KeyError::Crypto(format!("serializing the JWKS: {e}")))?;
        Ok(Snapshot {
            published,
            by_alg,
            jwks: Bytes::from(jwks),
        })
    }
}

/// Decrypts one stored key and checks its public half against the private key.
fn load_key(
    master: &MasterKey,
    record: &SigningKeyRecord,
    alg: SigningAlg,
) -> Result<LoadedKey, KeyError> {
    let pkcs8 = secrecy::SecretSlice::from(
        master.decrypt(&record.encrypted_private_key, record.kid.as_bytes())?,
    );
    let key = PrivateKey::from_pkcs8(alg, pkcs8.expose_secret())?;
    // SECURITY: what we publish and verify with comes from the authenticated private
    // key; a stored public JWK that disagrees means the row was tampered with.
    if !key.matches_jwk(&record.public_jwk) {
        return Err(KeyError::Crypto(format!(
            "the stored public key of {} does not match its private key",
            record.kid
        )));
    }
    let mut validation = Validation::new(jwt_algorithm(alg));
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    Ok(LoadedKey {
        kid: record.kid.clone(),
        alg,
        encrypted_private_key: record.encrypted_private_key.clone(),
        public_jwk: record.public_jwk.clone(),
        published_jwk: key.public_jwk(&record.kid, alg),
        decoding: key.decoding_key(),
        private: key,
        validation,
    })
}

impl Snapshot {
    /// A JWS (RFC 7515 compact form) of `claims` under the current key of `alg`, with
    /// header `{"alg": alg, "typ": typ, "kid": kid}`.
    pub(super) fn sign<T: Serialize>(
        &self,
        alg: SigningAlg,
        typ: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        let key = self.current(alg).ok_or(KeyError::NoSigningKey(alg))?;
        jwt::encode(key.alg.as_str(), typ, &key.kid, claims, |input| {
            key.private.sign(input)
        })
    }

    /// Verifies a JWT signed by one of the published keys at `now` and returns its claims.
    pub(super) fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        expected: &Expectations<'_>,
        now: OffsetDateTime,
    ) -> Result<T, KeyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(KeyError::Invalid("token too large"));
        }
        let header = jwt::peek_header(token)?;
        if header.crit.is_some() {
            return Err(KeyError::Invalid("unsupported critical header"));
        }
        let kid = header.kid.ok_or(KeyError::Invalid("missing kid"))?;
        let published = self
            .published
            .get(&kid)
            .ok_or(KeyError::Invalid("unknown key"))?;
        if published.remove_after.is_some_and(|t| t <= now) {
            return Err(KeyError::Invalid("unknown key"));
        }
        let key = &published.key;
        // SECURITY: the key decides the algorithm, never the token. This refuses `none`,
        // HMAC keyed with our public key, and a kid of one key type with another type's
        // algorithm (algorithm confusion).
        if header.alg != key.alg.as_str() {
            return Err(KeyError::Invalid("algorithm does not match the key"));
        }
        jwt::check_typ(header.typ.as_deref(), expected.typ)?;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &key.validation)
            .map_err(|e| jwt::from_jwt_error(&e))?;
        jwt::check_claims(&data.claims, expected, now)?;
        serde_json::from_value(data.claims).map_err(|_| KeyError::Invalid("malformed claims"))
    }

    /// `{"keys":[...]}`: the public JWKs of every next, current and retired key, serialized
    /// once when the snapshot was built.
    pub(super) fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// `alg`'s signing state: since when its current key signs (none: no current key) and
    /// how many of its keys the JWKS publishes.
    pub(super) fn status(&self, alg: SigningAlg) -> AlgStatus {
        AlgStatus {
            alg,
            has_current: self.current(alg).is_some(),
            current_since: self
                .by_alg
                .get(&alg)
                .filter(|k| k.current.is_some())
                .and_then(|k| k.current_activated_at),
            published: self.published.values().filter(|p| p.key.alg == alg).count(),
        }
    }
}
