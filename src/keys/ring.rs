//! The key ring that ties the two halves together: the shared state (store, master key,
//! clock, the current snapshot), loading and reloading it, the tasks that keep it fresh,
//! and the public signing API (`sign`, `verify`, the JWKS, sealing under the master key),
//! which hands signing and verification to the current snapshot. What signs and verifies
//! is in `snapshot.rs`; creating, rotating and retiring keys in `rotation.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use actix_web::web::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::jwt::Expectations;
use super::snapshot::{AlgStatus, DEFAULT_ALG, KeyState, Snapshot};
use super::{KeyError, MasterKey};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::jws::SigningAlg;
use crate::storage::{Store, StoreError};

/// How often `load_or_init` retries when another instance creates the first key at the
/// same moment.
const INIT_ATTEMPTS: usize = 3;

/// How long a retired key stays published by default: the default token lifetime (10
/// minutes) plus the clock skew allowance. `load_or_init_with` takes the configured value.
const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(10 * 60 + 60);

pub(super) struct Inner {
    pub(super) store: Arc<dyn Store>,
    pub(super) master: MasterKey,
    pub(super) clock: Arc<dyn Clock>,
    /// How long a retired key stays published: the longest token lifetime plus skew.
    pub(super) retain: time::Duration,
    /// The algorithms this instance signs with and keeps keys for (`keys.algorithms`),
    /// sorted, RS256 first.
    pub(super) algorithms: Vec<SigningAlg>,
    pub(super) snapshot: RwLock<Arc<Snapshot>>,
    /// Serialises reloads so an older read never replaces a newer snapshot.
    pub(super) reload: tokio::sync::Mutex<()>,
    /// Set when a reload found keys this master key cannot decrypt (the keys were
    /// re-encrypted under a new master key): the ring keeps signing with what it holds but
    /// must not add keys encrypted under the old master key.
    pub(super) master_stale: AtomicBool,
}

/// The in-memory key set of one instance, shared by all requests (cheap to clone).
#[derive(Clone)]
pub struct KeyRing {
    pub(super) inner: Arc<Inner>,
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
        let next = match Snapshot::build(
            &records,
            &previous,
            &self.inner.master,
            self.inner.clock.now(),
        ) {
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
        self.snapshot().sign(alg, typ, claims)
    }

    /// Verifies a JWT signed by one of our published keys and returns its claims.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        expected: &Expectations<'_>,
    ) -> Result<T, KeyError> {
        self.snapshot()
            .verify(token, expected, self.inner.clock.now())
    }

    /// `{"keys":[...]}`: the public JWKs of every next, current and retired key,
    /// serialized once per reload.
    pub fn jwks_json(&self) -> Bytes {
        self.snapshot().jwks()
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

    /// The kid of the key that signs `alg` now.
    pub fn current_kid_for(&self, alg: SigningAlg) -> Option<String> {
        self.snapshot().current(alg).map(|k| k.kid.clone())
    }

    /// Per configured algorithm: since when its current key signs (none: no current key)
    /// and how many of its keys the JWKS publishes. For metrics.
    pub fn alg_status(&self) -> Vec<AlgStatus> {
        let snapshot = self.snapshot();
        self.inner
            .algorithms
            .iter()
            .map(|&alg| snapshot.status(alg))
            .collect()
    }

    pub(super) fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
