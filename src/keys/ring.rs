//! The key ring: an immutable snapshot of the published keys, swapped whole on reload, so
//! signing and verification only ever take a read lock for an `Arc` clone.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use actix_web::web::Bytes;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::jwt::{self, Expectations, MAX_TOKEN_LEN};
use super::material::{RsaKey, generate_rsa_pkcs8};
use super::{KeyError, MasterKey};
use crate::clock::Clock;
use crate::storage::{SigningKeyRecord, Store, StoreError};

/// The algorithm every deployment signs with (OIDC Core §15.1 requires RS256).
const DEFAULT_ALG: Algorithm = Algorithm::RS256;
const DEFAULT_ALG_NAME: &str = "RS256";

/// How often `load_or_init` retries when another instance creates the first key at the
/// same moment.
const INIT_ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyState {
    Next,
    Current,
    Retired,
}

impl KeyState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Current => "current",
            Self::Retired => "retired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "next" => Some(Self::Next),
            "current" => Some(Self::Current),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// One decrypted key. Shared between snapshots while its row is unchanged, so a reload of
/// an unchanged set does no cryptography.
struct LoadedKey {
    kid: String,
    alg_name: &'static str,
    /// What it was built from, to recognise the same row on the next reload.
    encrypted_private_key: Vec<u8>,
    public_jwk: serde_json::Value,
    /// Rebuilt from the private key, never copied from the stored column.
    published_jwk: serde_json::Value,
    private: RsaKey,
    decoding: DecodingKey,
    /// Pinned to the key's algorithm; time and audience are checked by `jwt::check_claims`
    /// against the injected clock, so jsonwebtoken never reads the system time.
    validation: Validation,
}

impl LoadedKey {
    fn is_built_from(&self, record: &SigningKeyRecord) -> bool {
        self.kid == record.kid
            && self.alg_name == record.alg
            && self.encrypted_private_key == record.encrypted_private_key
            && self.public_jwk == record.public_jwk
    }
}

struct PublishedKey {
    key: Arc<LoadedKey>,
    /// Retired keys stop verifying at this instant even before the next reload.
    remove_after: Option<OffsetDateTime>,
}

struct Snapshot {
    published: HashMap<String, PublishedKey>,
    current: Option<Arc<LoadedKey>>,
    jwks: Bytes,
    algorithms: Vec<String>,
}

impl Snapshot {
    fn empty() -> Self {
        Self {
            published: HashMap::new(),
            current: None,
            jwks: Bytes::from_static(br#"{"keys":[]}"#),
            algorithms: Vec::new(),
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    master: MasterKey,
    clock: Arc<dyn Clock>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serialises reloads so an older read never replaces a newer snapshot.
    reload: tokio::sync::Mutex<()>,
}

/// The in-memory key set of one instance, shared by all requests (cheap to clone).
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

impl KeyRing {
    /// Loads and decrypts every key. If no RS256 key is `current`, creates one; when
    /// another instance wins that race, uses the winner's key. A wrong master key is
    /// `MasterKeyMismatch`, never a silently new key.
    pub async fn load_or_init(
        store: Arc<dyn Store>,
        master: MasterKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeyError> {
        let ring = Self {
            inner: Arc::new(Inner {
                store,
                master,
                clock,
                snapshot: RwLock::new(Arc::new(Snapshot::empty())),
                reload: tokio::sync::Mutex::new(()),
            }),
        };
        for _ in 0..INIT_ATTEMPTS {
            ring.reload().await?;
            if ring.snapshot().current.is_some() {
                return Ok(ring);
            }
            let now = ring.inner.clock.now();
            let record = ring.new_record(KeyState::Current, now).await?;
            match ring.inner.store.insert_signing_key(&record).await {
                Ok(()) => {
                    tracing::info!(kid = %record.kid, alg = %record.alg, "created a signing key")
                }
                Err(StoreError::Conflict(_)) => {
                    tracing::info!("another instance created the signing key first; using it");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(KeyError::Crypto(
            "no current signing key after creating one".to_owned(),
        ))
    }

    /// Re-reads the key set from the store and swaps it in whole. On error the previous
    /// set stays in use.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let _guard = self.inner.reload.lock().await;
        let records = self.inner.store.list_signing_keys().await?;
        let previous = self.snapshot();
        let next = self.build(&records, &previous)?;
        let old_kid = previous.current.as_ref().map(|k| k.kid.as_str());
        let new_kid = next.current.as_ref().map(|k| k.kid.as_str());
        if old_kid != new_kid {
            tracing::info!(kid = new_kid, previous = old_kid, "signing key changed");
        }
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// A JWS (RFC 7515 compact form) of `claims` under the current key, with header
    /// `{"alg": "RS256", "typ": typ, "kid": kid}`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        let snapshot = self.snapshot();
        let key = snapshot.current.as_ref().ok_or(KeyError::NoSigningKey)?;
        // RS256 is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), in aws-lc.
        jwt::encode(key.alg_name, typ, &key.kid, claims, |input| {
            key.private.sign(&RSA_PKCS1_SHA256, input)
        })
    }

    /// Verifies a JWT signed by one of our published keys and returns its claims.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        expected: &Expectations<'_>,
    ) -> Result<T, KeyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(KeyError::Invalid("token too large"));
        }
        let header = jwt::peek_header(token)?;
        if header.crit.is_some() {
            return Err(KeyError::Invalid("unsupported critical header"));
        }
        let kid = header.kid.ok_or(KeyError::Invalid("missing kid"))?;
        let snapshot = self.snapshot();
        let published = snapshot
            .published
            .get(&kid)
            .ok_or(KeyError::Invalid("unknown key"))?;
        let now = self.inner.clock.now();
        if published.remove_after.is_some_and(|t| t <= now) {
            return Err(KeyError::Invalid("unknown key"));
        }
        let key = &published.key;
        // SECURITY: the key decides the algorithm, never the token. This refuses `none`
        // and HMAC keyed with our public key (algorithm confusion).
        if header.alg != key.alg_name {
            return Err(KeyError::Invalid("algorithm does not match the key"));
        }
        jwt::check_typ(header.typ.as_deref(), expected.typ)?;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &key.validation)
            .map_err(|e| jwt::from_jwt_error(&e))?;
        jwt::check_claims(&data.claims, expected, now)?;
        serde_json::from_value(data.claims).map_err(|_| KeyError::Invalid("malformed claims"))
    }

    /// `{"keys":[...]}`: the public JWKs of every next, current and retired key,
    /// serialized once per reload.
    pub fn jwks_json(&self) -> Bytes {
        self.snapshot().jwks.clone()
    }

    /// The algorithms a current key signs with, e.g. `["RS256"]` (for discovery's
    /// `id_token_signing_alg_values_supported`).
    pub fn algorithms(&self) -> Vec<String> {
        self.snapshot().algorithms.clone()
    }

    /// The kid of the key that signs now.
    pub fn current_kid(&self) -> Option<String> {
        self.snapshot().current.as_ref().map(|k| k.kid.clone())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A new RS256 key as a row: the private key encrypted under the master key with the
    /// kid (its RFC 7638 thumbprint) as associated data.
    pub(super) async fn new_record(
        &self,
        state: KeyState,
        now: OffsetDateTime,
    ) -> Result<SigningKeyRecord, KeyError> {
        // RSA generation takes tens of milliseconds: keep it off the async workers.
        let pkcs8 = tokio::task::spawn_blocking(generate_rsa_pkcs8)
            .await
            .map_err(|e| KeyError::Crypto(format!("key generation task failed: {e}")))??;
        let key = RsaKey::from_pkcs8(pkcs8.expose_secret())?;
        let kid = key.thumbprint();
        let alg = DEFAULT_ALG_NAME;
        Ok(SigningKeyRecord {
            encrypted_private_key: self
                .inner
                .master
                .encrypt(pkcs8.expose_secret(), kid.as_bytes())?,
            public_jwk: key.public_jwk(&kid, alg),
            kid,
            alg: alg.to_owned(),
            state: state.as_str().to_owned(),
            created_at: now,
            activated_at: (state == KeyState::Current).then_some(now),
            retired_at: None,
            remove_after: None,
        })
    }

    fn build(
        &self,
        records: &[SigningKeyRecord],
        previous: &Snapshot,
    ) -> Result<Snapshot, KeyError> {
        let now = self.inner.clock.now();
        let mut published = HashMap::new();
        let mut jwks = Vec::new();
        let mut current: Option<(Arc<LoadedKey>, Option<OffsetDateTime>)> = None;

        for record in records {
            let Some(state) = KeyState::parse(&record.state) else {
                tracing::warn!(kid = %record.kid, state = %record.state, "skipping a signing key in an unknown state");
                continue;
            };
            if record.alg != DEFAULT_ALG_NAME {
                tracing::warn!(kid = %record.kid, alg = %record.alg, "skipping a signing key with an unsupported algorithm");
                continue;
            }
            if state == KeyState::Retired && record.remove_after.is_some_and(|t| t <= now) {
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
                None => Arc::new(self.load_key(record)?),
            };
            if state == KeyState::Current
                && current
                    .as_ref()
                    .is_none_or(|(_, activated)| record.activated_at > *activated)
            {
                current = Some((Arc::clone(&key), record.activated_at));
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
        let current = current.map(|(key, _)| key);
        Ok(Snapshot {
            algorithms: current.iter().map(|k| k.alg_name.to_owned()).collect(),
            current,
            published,
            jwks: Bytes::from(jwks),
        })
    }

    fn load_key(&self, record: &SigningKeyRecord) -> Result<LoadedKey, KeyError> {
        let pkcs8 = secrecy::SecretSlice::from(
            self.inner
                .master
                .decrypt(&record.encrypted_private_key, record.kid.as_bytes())?,
        );
        let key = RsaKey::from_pkcs8(pkcs8.expose_secret())?;
        // SECURITY: what we publish and verify with comes from the authenticated private
        // key; a stored public JWK that disagrees means the row was tampered with.
        if !key.matches_jwk(&record.public_jwk) {
            return Err(KeyError::Crypto(format!(
                "the stored public key of {} does not match its private key",
                record.kid
            )));
        }
        let mut validation = Validation::new(DEFAULT_ALG);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Ok(LoadedKey {
            kid: record.kid.clone(),
            alg_name: DEFAULT_ALG_NAME,
            encrypted_private_key: record.encrypted_private_key.clone(),
            public_jwk: record.public_jwk.clone(),
            published_jwk: key.public_jwk(&record.kid, DEFAULT_ALG_NAME),
            decoding: key.decoding_key(),
            private: key,
            validation,
        })
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current_kid", &self.current_kid())
            .finish_non_exhaustive()
    }
}
