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
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::clock::Clock;
use crate::storage::{KeyRetirement, Retired, SigningKeyRecord, Store, StoreError};

/// The algorithm every deployment signs with (OIDC Core §15.1 requires RS256).
const DEFAULT_ALG: Algorithm = Algorithm::RS256;
const DEFAULT_ALG_NAME: &str = "RS256";

/// How often `load_or_init` retries when another instance creates the first key at the
/// same moment.
const INIT_ATTEMPTS: usize = 3;

/// How long a retired key stays published by default: the default token lifetime (10
/// minutes) plus the clock skew allowance. `load_or_init_with` takes the configured value.
const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(10 * 60 + 60);

/// What `rotate` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RotationOutcome {
    Rotated {
        /// The key that was current and is now retired.
        retired: String,
        /// The key that signs from now on.
        current: String,
        /// The new pre-published key.
        next: Option<String>,
        #[serde(with = "time::serde::rfc3339")]
        remove_after: OffsetDateTime,
    },
    /// Another instance rotated first; the ring now holds its result.
    LostRace { current: Option<String> },
}

/// What an emergency `retire` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RetireOutcome {
    Retired {
        kid: String,
        previous_state: String,
        /// The key promoted to current when the retired key was current.
        promoted: Option<String>,
        next: Option<String>,
    },
    NotFound {
        kid: String,
    },
}

/// Whether the scheduled rotation should run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationDue {
    No,
    Yes,
    /// Due, but there is no next key published long enough: create one and wait.
    NeedsNext,
    /// Due, but the next key was published less than the pre-publication window ago.
    Waiting,
}

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
    current_activated_at: Option<OffsetDateTime>,
    /// When the oldest next key of the signing algorithm was created (published).
    next_created_at: Option<OffsetDateTime>,
    jwks: Bytes,
    algorithms: Vec<String>,
}

impl Snapshot {
    fn empty() -> Self {
        Self {
            published: HashMap::new(),
            current: None,
            current_activated_at: None,
            next_created_at: None,
            jwks: Bytes::from_static(br#"{"keys":[]}"#),
            algorithms: Vec::new(),
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    master: MasterKey,
    clock: Arc<dyn Clock>,
    /// How long a retired key stays published: the longest token lifetime plus skew.
    retain: time::Duration,
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
        Self::load_or_init_with(store, master, clock, DEFAULT_RETENTION).await
    }

    /// As `load_or_init`; `retain` is how long a retired key stays published (the longest
    /// token lifetime plus clock skew, see `keys::retention`). Also creates a `next` key
    /// when there is none.
    pub async fn load_or_init_with(
        store: Arc<dyn Store>,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        retain: std::time::Duration,
    ) -> Result<Self, KeyError> {
        let ring = Self {
            inner: Arc::new(Inner {
                store,
                master,
                clock,
                retain: time::Duration::try_from(retain).unwrap_or(time::Duration::MAX),
                snapshot: RwLock::new(Arc::new(Snapshot::empty())),
                reload: tokio::sync::Mutex::new(()),
            }),
        };
        for _ in 0..INIT_ATTEMPTS {
            ring.reload().await?;
            if ring.snapshot().current.is_some() {
                ring.ensure_next().await?;
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

    /// Inserts a `next` key when the signing algorithm has none (first start, or a
    /// database from before next keys existed), and reloads. Two instances doing this at
    /// once may each add one; rotation then promotes the oldest.
    pub async fn ensure_next(&self) -> Result<(), KeyError> {
        if self.snapshot().next_created_at.is_some() {
            return Ok(());
        }
        let record = self
            .new_record(KeyState::Next, self.inner.clock.now())
            .await?;
        self.inner.store.insert_signing_key(&record).await?;
        tracing::info!(kid = %record.kid, alg = %record.alg, "created a next signing key");
        self.reload().await
    }

    /// Whether `current.activated_at + interval <= now`, and whether the next key has
    /// been published for at least `prepublication`.
    pub fn rotation_due(
        &self,
        interval: std::time::Duration,
        prepublication: std::time::Duration,
    ) -> RotationDue {
        let d = |s: std::time::Duration| time::Duration::try_from(s).unwrap_or(time::Duration::MAX);
        let snapshot = self.snapshot();
        let now = self.inner.clock.now();
        let Some(activated) = snapshot.current_activated_at else {
            return RotationDue::No;
        };
        if activated.saturating_add(d(interval)) > now {
            return RotationDue::No;
        }
        match snapshot.next_created_at {
            None => RotationDue::NeedsNext,
            Some(created) if created.saturating_add(d(prepublication)) > now => {
                RotationDue::Waiting
            }
            Some(_) => RotationDue::Yes,
        }
    }

    /// Rotates: current → retired (published for the retention window), next → current,
    /// a fresh next. Compare-and-swap on the current kid of this ring's snapshot (no
    /// reload first: a rotation decided on that snapshot must not retire a key another
    /// instance promoted meanwhile), so when instances rotate at once exactly one wins
    /// and the others get `LostRace` and reload.
    pub async fn rotate(&self) -> Result<RotationOutcome, KeyError> {
        self.rotate_by(&Actor::default()).await
    }

    /// `rotate`, audited as done by `actor`.
    pub async fn rotate_by(&self, actor: &Actor) -> Result<RotationOutcome, KeyError> {
        let snapshot = self.snapshot();
        let expected = snapshot
            .current
            .as_ref()
            .map(|k| k.kid.clone())
            .ok_or(KeyError::NoSigningKey)?;
        let now = self.inner.clock.now();
        let fresh = self.fresh_keys(&snapshot, now).await?;
        let remove_after = now.saturating_add(self.inner.retain);
        let audit = AuditEvent::new(now, AuditKind::KeyRotated, Outcome::Success, actor)
            .detail("remove_after", remove_after.unix_timestamp());
        let result = self
            .inner
            .store
            .retire_signing_key(&KeyRetirement {
                kid: &expected,
                only_if_current: true,
                now,
                remove_after,
                fresh: &fresh,
                audit: &audit,
            })
            .await;
        let outcome = match result {
            Ok(Retired::Retired {
                promoted: Some(current),
                next,
                ..
            }) => {
                tracing::info!(retired = %expected, %current, next = next.as_deref(), "rotated the signing key");
                RotationOutcome::Rotated {
                    retired: expected,
                    current,
                    next,
                    remove_after,
                }
            }
            Ok(Retired::Retired { promoted: None, .. }) => {
                return Err(KeyError::Crypto("rotation left no current key".to_owned()));
            }
            // The partial unique index refused a second current key: another won.
            Ok(Retired::LostRace | Retired::NotFound) | Err(StoreError::Conflict(_)) => {
                RotationOutcome::LostRace { current: None }
            }
            Err(e) => return Err(e.into()),
        };
        self.reload().await?;
        Ok(match outcome {
            RotationOutcome::LostRace { .. } => {
                tracing::info!("another instance rotated the signing key first");
                RotationOutcome::LostRace {
                    current: self.current_kid(),
                }
            }
            rotated => rotated,
        })
    }

    /// Emergency retirement: `kid` is unpublished at once and tokens it signed stop
    /// verifying. If it was current, next is promoted and a new next created in the same
    /// transaction.
    pub async fn retire(&self, kid: &str, actor: &Actor) -> Result<RetireOutcome, KeyError> {
        self.reload().await?;
        let snapshot = self.snapshot();
        let now = self.inner.clock.now();
        let fresh = self.fresh_keys(&snapshot, now).await?;
        let audit = AuditEvent::new(now, AuditKind::KeyRetired, Outcome::Success, actor)
            .detail("emergency", true);
        let result = self
            .inner
            .store
            .retire_signing_key(&KeyRetirement {
                kid,
                only_if_current: false,
                now,
                remove_after: now,
                fresh: &fresh,
                audit: &audit,
            })
            .await?;
        self.reload().await?;
        Ok(match result {
            Retired::Retired {
                previous_state,
                promoted,
                next,
                ..
            } => {
                tracing::warn!(%kid, %previous_state, promoted = promoted.as_deref(), "retired a signing key at once");
                RetireOutcome::Retired {
                    kid: kid.to_owned(),
                    previous_state,
                    promoted,
                    next,
                }
            }
            Retired::LostRace | Retired::NotFound => RetireOutcome::NotFound {
                kid: kid.to_owned(),
            },
        })
    }

    /// A fresh next key, plus one to promote directly when there is no next key.
    async fn fresh_keys(
        &self,
        snapshot: &Snapshot,
        now: OffsetDateTime,
    ) -> Result<Vec<SigningKeyRecord>, KeyError> {
        let mut fresh = vec![self.new_record(KeyState::Next, now).await?];
        if snapshot.next_created_at.is_none() {
            fresh.push(self.new_record(KeyState::Next, now).await?);
        }
        Ok(fresh)
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
        let mut next_created_at: Option<OffsetDateTime> = None;

        for record in records {
            let Some(state) = KeyState::parse(&record.state) else {
                tracing::warn!(kid = %record.kid, state = %record.state, "skipping a signing key in an unknown state");
                continue;
            };
            if record.alg != DEFAULT_ALG_NAME {
                tracing::warn!(kid = %record.kid, alg = %record.alg, "skipping a signing key with an unsupported algorithm");
                continue;
            }
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
                None => Arc::new(self.load_key(record)?),
            };
            if state == KeyState::Current
                && current
                    .as_ref()
                    .is_none_or(|(_, activated)| record.activated_at > *activated)
            {
                current = Some((Arc::clone(&key), record.activated_at));
            }
            if state == KeyState::Next && next_created_at.is_none_or(|t| record.created_at < t) {
                next_created_at = Some(record.created_at);
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
        let current_activated_at = current.as_ref().and_then(|(_, activated)| *activated);
        let current = current.map(|(key, _)| key);
        Ok(Snapshot {
            current_activated_at,
            next_created_at,
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
