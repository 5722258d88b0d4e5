//! The key ring: an immutable snapshot of the published keys, swapped whole on reload, so
//! signing and verification only ever take a read lock for an `Arc` clone.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use actix_web::web::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::jwt::{self, Expectations, MAX_TOKEN_LEN};
use super::material::{PrivateKey, generate_pkcs8};
use super::{KeyError, MasterKey};
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::jws::SigningAlg;
use crate::storage::{KeyRetirement, Retired, SigningKeyRecord, Store, StoreError};

/// The algorithm every deployment signs with (OIDC Core §15.1 requires RS256); access
/// tokens are always signed with it.
const DEFAULT_ALG: SigningAlg = SigningAlg::RS256;

/// jsonwebtoken's name for the algorithm a key is pinned to.
fn jwt_algorithm(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::RS256 => Algorithm::RS256,
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::EdDSA => Algorithm::EdDSA,
    }
}

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
        alg: SigningAlg,
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
    LostRace {
        alg: SigningAlg,
        current: Option<String>,
    },
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
    /// A configured algorithm without a current key (say, its last current key was retired
    /// by a command run without the algorithm in its configuration): create one.
    NeedsCurrent,
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

/// Whether `keys retire` puts a fresh key in the retired key's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Successor {
    Replace,
    /// Only for an algorithm no longer configured: see `KeyRing::retire_with`.
    None,
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
    alg: SigningAlg,
    /// What it was built from, to recognise the same row on the next reload.
    encrypted_private_key: Vec<u8>,
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
            && self.alg.as_str() == record.alg
            && self.encrypted_private_key == record.encrypted_private_key
            && self.public_jwk == record.public_jwk
    }
}

struct PublishedKey {
    key: Arc<LoadedKey>,
    /// Retired keys stop verifying at this instant even before the next reload.
    remove_after: Option<OffsetDateTime>,
}

/// The signing state of one algorithm.
#[derive(Default)]
struct AlgKeys {
    current: Option<Arc<LoadedKey>>,
    current_activated_at: Option<OffsetDateTime>,
    /// When the oldest next key was created (published).
    next_created_at: Option<OffsetDateTime>,
}

struct Snapshot {
    published: HashMap<String, PublishedKey>,
    /// Every algorithm with a current or next key in the database.
    by_alg: BTreeMap<SigningAlg, AlgKeys>,
    jwks: Bytes,
}

impl Snapshot {
    fn empty() -> Self {
        Self {
            published: HashMap::new(),
            by_alg: BTreeMap::new(),
            jwks: Bytes::from_static(br#"{"keys":[]}"#),
        }
    }

    fn current(&self, alg: SigningAlg) -> Option<&Arc<LoadedKey>> {
        self.by_alg.get(&alg).and_then(|k| k.current.as_ref())
    }

    fn next_created_at(&self, alg: SigningAlg) -> Option<OffsetDateTime> {
        self.by_alg.get(&alg).and_then(|k| k.next_created_at)
    }
}

struct Inner {
    store: Arc<dyn Store>,
    master: MasterKey,
    clock: Arc<dyn Clock>,
    /// How long a retired key stays published: the longest token lifetime plus skew.
    retain: time::Duration,
    /// The algorithms this instance signs with and keeps keys for (`keys.algorithms`),
    /// sorted, RS256 first.
    algorithms: Vec<SigningAlg>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serialises reloads so an older read never replaces a newer snapshot.
    reload: tokio::sync::Mutex<()>,
    /// Set when a reload found keys this master key cannot decrypt (the keys were
    /// re-encrypted under a new master key): the ring keeps signing with what it holds but
    /// must not add keys encrypted under the old master key.
    master_stale: AtomicBool,
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
        Self::init(store, master, clock, retain, &[DEFAULT_ALG]).await
    }

    /// As `load_or_init_with`, for every algorithm in `keys.algorithms` and the retention
    /// the token lifetimes call for: what the server and the CLI use.
    pub async fn load_or_init_for(
        store: Arc<dyn Store>,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        settings: &Settings,
    ) -> Result<Self, KeyError> {
        Self::init(
            store,
            master,
            clock,
            super::retention(settings),
            &settings.keys.algorithms,
        )
        .await
    }

    async fn init(
        store: Arc<dyn Store>,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        retain: std::time::Duration,
        algorithms: &[SigningAlg],
    ) -> Result<Self, KeyError> {
        let mut algorithms = algorithms.to_vec();
        algorithms.push(DEFAULT_ALG);
        algorithms.sort();
        algorithms.dedup();
        let ring = Self {
            inner: Arc::new(Inner {
                store,
                master,
                clock,
                retain: time::Duration::try_from(retain).unwrap_or(time::Duration::MAX),
                algorithms,
                snapshot: RwLock::new(Arc::new(Snapshot::empty())),
                reload: tokio::sync::Mutex::new(()),
                master_stale: AtomicBool::new(false),
            }),
        };
        for _ in 0..INIT_ATTEMPTS {
            ring.reload().await?;
            let snapshot = ring.snapshot();
            let missing: Vec<SigningAlg> = ring
                .inner
                .algorithms
                .iter()
                .copied()
                .filter(|alg| snapshot.current(*alg).is_none())
                .collect();
            if missing.is_empty() {
                for alg in ring.inner.algorithms.clone() {
                    ring.ensure_next(alg).await?;
                }
                return Ok(ring);
            }
            for alg in missing {
                let now = ring.inner.clock.now();
                let record = ring.new_record(alg, KeyState::Current, now).await?;
                match ring.inner.store.insert_signing_key(&record).await {
                    Ok(()) => {
                        tracing::info!(kid = %record.kid, %alg, "created a signing key")
                    }
                    Err(StoreError::Conflict(_)) => {
                        tracing::info!(%alg, "another instance created the signing key first; using it");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(KeyError::Crypto(
            "no current signing key after creating one".to_owned(),
        ))
    }

    /// The algorithms this ring signs with (`keys.algorithms`), RS256 first.
    pub fn configured_algorithms(&self) -> &[SigningAlg] {
        &self.inner.algorithms
    }

    /// Re-reads the key set from the store and swaps it in whole. On error the previous
    /// set stays in use.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let _guard = self.inner.reload.lock().await;
        let records = self.inner.store.list_signing_keys().await?;
        let previous = self.snapshot();
        let next = match self.build(&records, &previous) {
            Ok(next) => next,
            Err(KeyError::MasterKeyMismatch) => {
                if !self.inner.master_stale.swap(true, Ordering::SeqCst) {
                    tracing::error!(
                        "the signing keys in the database are encrypted under another master key \
                         (was the master key rotated?): this instance keeps signing with the keys \
                         it holds, creates and rotates none, and must be restarted with the \
                         current master key"
                    );
                }
                return Err(KeyError::MasterKeyMismatch);
            }
            Err(e) => return Err(e),
        };
        self.inner.master_stale.store(false, Ordering::SeqCst);
        for (alg, keys) in &next.by_alg {
            let old_kid = previous.current(*alg).map(|k| k.kid.as_str());
            let new_kid = keys.current.as_ref().map(|k| k.kid.as_str());
            if old_kid != new_kid {
                tracing::info!(%alg, kid = new_kid, previous = old_kid, "signing key changed");
            }
        }
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// Refuses to write keys while the database holds keys this master key cannot read:
    /// they would be encrypted under a master key the other instances no longer have.
    fn check_master(&self) -> Result<(), KeyError> {
        if self.inner.master_stale.load(Ordering::SeqCst) {
            return Err(KeyError::MasterKeyMismatch);
        }
        Ok(())
    }

    /// Inserts a `next` key for `alg` when it has none (first start, or a database from
    /// before next keys existed), and reloads. When another instance inserts one at the
    /// same moment, the unique index keeps one and this instance reloads it.
    pub async fn ensure_next(&self, alg: SigningAlg) -> Result<(), KeyError> {
        if self.snapshot().next_created_at(alg).is_some() {
            return Ok(());
        }
        // Re-read first: a reload under a master key that is no longer the database's
        // fails here, before a key sealed under it could be written.
        self.reload().await?;
        if self.snapshot().next_created_at(alg).is_some() {
            return Ok(());
        }
        self.check_master()?;
        let record = self
            .new_record(alg, KeyState::Next, self.inner.clock.now())
            .await?;
        match self.inner.store.insert_signing_key(&record).await {
            Ok(()) => tracing::info!(kid = %record.kid, %alg, "created a next signing key"),
            Err(StoreError::Conflict(_)) => {
                tracing::info!(%alg, "another instance created the next key first; using it");
            }
            Err(e) => return Err(e.into()),
        }
        self.reload().await
    }

    /// Gives `alg` a current key if it has none (as the first start does), then a next
    /// key. Losing the race to another instance is fine: the unique index keeps one.
    pub async fn ensure_current(&self, alg: SigningAlg) -> Result<(), KeyError> {
        self.reload().await?;
        if self.snapshot().current(alg).is_none() {
            self.check_master()?;
            let record = self
                .new_record(alg, KeyState::Current, self.inner.clock.now())
                .await?;
            match self.inner.store.insert_signing_key(&record).await {
                Ok(()) => tracing::warn!(
                    kid = %record.kid,
                    %alg,
                    "a configured algorithm had no current signing key; created one"
                ),
                Err(StoreError::Conflict(_)) => {
                    tracing::info!(%alg, "another instance created the current key first");
                }
                Err(e) => return Err(e.into()),
            }
            self.reload().await?;
        }
        self.ensure_next(alg).await
    }

    /// Whether `alg`'s `current.activated_at + interval <= now`, and whether its next key
    /// has been published for at least `prepublication`.
    pub fn rotation_due(
        &self,
        alg: SigningAlg,
        interval: std::time::Duration,
        prepublication: std::time::Duration,
    ) -> RotationDue {
        let d = |s: std::time::Duration| time::Duration::try_from(s).unwrap_or(time::Duration::MAX);
        let snapshot = self.snapshot();
        let now = self.inner.clock.now();
        let Some(keys) = snapshot.by_alg.get(&alg) else {
            return RotationDue::NeedsCurrent;
        };
        let Some(activated) = keys.current_activated_at else {
            return RotationDue::NeedsCurrent;
        };
        if activated.saturating_add(d(interval)) > now {
            return RotationDue::No;
        }
        match keys.next_created_at {
            None => RotationDue::NeedsNext,
            Some(created) if created.saturating_add(d(prepublication)) > now => {
                RotationDue::Waiting
            }
            Some(_) => RotationDue::Yes,
        }
    }

    /// Rotates every configured algorithm (see `rotate_alg_by`).
    pub async fn rotate(&self) -> Result<Vec<RotationOutcome>, KeyError> {
        self.rotate_by(&Actor::default()).await
    }

    /// `rotate`, audited as done by `actor`: one transaction (and one audit row) per
    /// algorithm.
    pub async fn rotate_by(&self, actor: &Actor) -> Result<Vec<RotationOutcome>, KeyError> {
        let mut outcomes = Vec::new();
        for alg in self.inner.algorithms.clone() {
            outcomes.push(self.rotate_alg_by(alg, actor).await?);
        }
        Ok(outcomes)
    }

    /// Rotates `alg`: current → retired (published for the retention window), next →
    /// current, a fresh next. Compare-and-swap on the current kid of this ring's snapshot
    /// (no reload first: a rotation decided on that snapshot must not retire a key another
    /// instance promoted meanwhile), so when instances rotate at once exactly one wins and
    /// the others get `LostRace` and reload.
    pub async fn rotate_alg_by(
        &self,
        alg: SigningAlg,
        actor: &Actor,
    ) -> Result<RotationOutcome, KeyError> {
        self.check_master()?;
        let snapshot = self.snapshot();
        let current = snapshot
            .current(alg)
            .cloned()
            .ok_or(KeyError::NoSigningKey(alg))?;
        let expected = current.kid.clone();
        let now = self.inner.clock.now();
        let fresh = self.fresh_keys(&snapshot, alg, now).await?;
        let remove_after = now.saturating_add(self.inner.retain);
        let audit = AuditEvent::new(now, AuditKind::KeyRotated, Outcome::Success, actor)
            .detail("remove_after", remove_after.unix_timestamp());
        let result = self
            .inner
            .store
            .retire_signing_key(&KeyRetirement {
                kid: &expected,
                only_if_current: true,
                expected_private_key: Some(&current.encrypted_private_key),
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
                tracing::info!(%alg, retired = %expected, %current, next = next.as_deref(), "rotated the signing key");
                RotationOutcome::Rotated {
                    alg,
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
                RotationOutcome::LostRace { alg, current: None }
            }
            Err(e) => return Err(e.into()),
        };
        self.reload().await?;
        Ok(match outcome {
            RotationOutcome::LostRace { .. } => {
                tracing::info!(%alg, "another instance rotated the signing key first");
                RotationOutcome::LostRace {
                    alg,
                    current: self.current_kid_for(alg),
                }
            }
            rotated => rotated,
        })
    }

    /// Emergency retirement: `kid` is unpublished at once and tokens it signed stop
    /// verifying. If it was current, its algorithm's next key is promoted and a new next
    /// created in the same transaction.
    pub async fn retire(&self, kid: &str, actor: &Actor) -> Result<RetireOutcome, KeyError> {
        self.retire_with(kid, Successor::Replace, actor).await
    }

    /// `retire`, choosing whether the key is replaced. `Successor::None` is for removing
    /// an algorithm that is no longer in `keys.algorithms` (its next key, then its current
    /// key); it is refused for an algorithm configured here, which must keep signing.
    pub async fn retire_with(
        &self,
        kid: &str,
        successor: Successor,
        actor: &Actor,
    ) -> Result<RetireOutcome, KeyError> {
        self.reload().await?;
        let snapshot = self.snapshot();
        let now = self.inner.clock.now();
        let alg = snapshot.published.get(kid).map(|p| p.key.alg);
        if let (Successor::None, Some(alg)) = (successor, alg)
            && self.inner.algorithms.contains(&alg)
        {
            return Err(KeyError::StillConfigured(alg));
        }
        // The retired key is replaced: a fresh next key, or a fresh current key when
        // there is no next key to promote. Keys this build cannot load (or already gone)
        // get no successor.
        let fresh = match (successor, alg) {
            (Successor::Replace, Some(alg)) => self.fresh_keys(&snapshot, alg, now).await?,
            _ => Vec::new(),
        };
        let audit = AuditEvent::new(now, AuditKind::KeyRetired, Outcome::Success, actor)
            .detail("emergency", true);
        // Compare-and-swap on the stored blob, as rotation does: if the master key was
        // rotated since the reload above, nothing (in particular no fresh key sealed under
        // the old master key) is written.
        let expected = snapshot
            .published
            .get(kid)
            .map(|p| p.key.encrypted_private_key.clone());
        let result = self
            .inner
            .store
            .retire_signing_key(&KeyRetirement {
                kid,
                only_if_current: false,
                expected_private_key: expected.as_deref(),
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

    /// Deletes retired keys past `remove_after` (housekeeping) and reloads when any went,
    /// so the JWKS this instance serves drops them too.
    pub async fn purge_removed(&self) -> Result<u64, KeyError> {
        let deleted = self
            .inner
            .store
            .purge_removed_signing_keys(self.inner.clock.now())
            .await?;
        if deleted > 0 {
            tracing::info!(deleted, "deleted retired signing keys past remove_after");
            self.reload().await?;
        }
        Ok(deleted)
    }

    /// A fresh next key for `alg`, plus one to promote directly when it has no next key.
    async fn fresh_keys(
        &self,
        snapshot: &Snapshot,
        alg: SigningAlg,
        now: OffsetDateTime,
    ) -> Result<Vec<SigningKeyRecord>, KeyError> {
        let mut fresh = vec![self.new_record(alg, KeyState::Next, now).await?];
        if snapshot.next_created_at(alg).is_none() {
            fresh.push(self.new_record(alg, KeyState::Next, now).await?);
        }
        Ok(fresh)
    }

    /// A JWS (RFC 7515 compact form) of `claims` under the current RS256 key, with header
    /// `{"alg": "RS256", "typ": typ, "kid": kid}`. Access tokens are always RS256.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        self.sign_with(DEFAULT_ALG, typ, claims)
    }

    /// As `sign`, under the current key of `alg`, which must be one of `keys.algorithms`
    /// (e.g. a client's `id_token_signed_response_alg`).
    pub fn sign_with<T: Serialize>(
        &self,
        alg: SigningAlg,
        typ: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        if !self.inner.algorithms.contains(&alg) {
            return Err(KeyError::AlgorithmNotEnabled(alg));
        }
        let snapshot = self.snapshot();
        let key = snapshot.current(alg).ok_or(KeyError::NoSigningKey(alg))?;
        jwt::encode(key.alg.as_str(), typ, &key.kid, claims, |input| {
            key.private.sign(input)
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

    /// `{"keys":[...]}`: the public JWKs of every next, current and retired key,
    /// serialized once per reload.
    pub fn jwks_json(&self) -> Bytes {
        self.snapshot().jwks.clone()
    }

    /// The configured algorithms that have a current key, RS256 first (for discovery's
    /// `id_token_signing_alg_values_supported`).
    pub fn algorithms(&self) -> Vec<String> {
        let snapshot = self.snapshot();
        self.inner
            .algorithms
            .iter()
            .filter(|alg| snapshot.current(**alg).is_some())
            .map(|alg| alg.as_str().to_owned())
            .collect()
    }

    /// Seals data that must stay confidential at rest under the master key (AES-256-GCM;
    /// `aad` binds the blob to its row).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.inner.master.encrypt(plaintext, aad)
    }

    /// The inverse of `seal`.
    pub fn open(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.inner.master.decrypt(blob, aad)
    }

    /// The kid of the RS256 key that signs now.
    pub fn current_kid(&self) -> Option<String> {
        self.current_kid_for(DEFAULT_ALG)
    }

    /// Per configured algorithm: since when its current key signs (none: no current key)
    /// and how many of its keys the JWKS publishes. For metrics.
    pub fn alg_status(&self) -> Vec<AlgStatus> {
        let snapshot = self.snapshot();
        self.inner
            .algorithms
            .iter()
            .map(|&alg| AlgStatus {
                alg,
                has_current: snapshot.current(alg).is_some(),
                current_since: snapshot
                    .by_alg
                    .get(&alg)
                    .filter(|k| k.current.is_some())
                    .and_then(|k| k.current_activated_at),
                published: snapshot
                    .published
                    .values()
                    .filter(|p| p.key.alg == alg)
                    .count(),
            })
            .collect()
    }

    /// The kid of the key that signs `alg` now.
    pub fn current_kid_for(&self, alg: SigningAlg) -> Option<String> {
        self.snapshot().current(alg).map(|k| k.kid.clone())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A new key for `alg` as a row: the private key encrypted under the master key with
    /// the kid (its RFC 7638 thumbprint) as associated data.
    pub(super) async fn new_record(
        &self,
        alg: SigningAlg,
        state: KeyState,
        now: OffsetDateTime,
    ) -> Result<SigningKeyRecord, KeyError> {
        // RSA generation takes tens of milliseconds: keep it off the async workers.
        let pkcs8 = tokio::task::spawn_blocking(move || generate_pkcs8(alg))
            .await
            .map_err(|e| KeyError::Crypto(format!("key generation task failed: {e}")))??;
        let key = PrivateKey::from_pkcs8(alg, pkcs8.expose_secret())?;
        let kid = key.thumbprint();
        Ok(SigningKeyRecord {
            encrypted_private_key: self
                .inner
                .master
                .encrypt(pkcs8.expose_secret(), kid.as_bytes())?,
            public_jwk: key.public_jwk(&kid, alg),
            kid,
            alg: alg.as_str().to_owned(),
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
        let mut by_alg: BTreeMap<SigningAlg, AlgKeys> = BTreeMap::new();

        for record in records {
            let Some(state) = KeyState::parse(&record.state) else {
                tracing::warn!(kid = %record.kid, state = %record.state, "skipping a signing key in an unknown state");
                continue;
            };
            let Some(alg) = SigningAlg::parse(&record.alg) else {
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
                None => Arc::new(self.load_key(record, alg)?),
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

    fn load_key(&self, record: &SigningKeyRecord, alg: SigningAlg) -> Result<LoadedKey, KeyError> {
        let pkcs8 = secrecy::SecretSlice::from(
            self.inner
                .master
                .decrypt(&record.encrypted_private_key, record.kid.as_bytes())?,
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
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current_kid", &self.current_kid())
            .field("algorithms", &self.inner.algorithms)
            .finish_non_exhaustive()
    }
}
