//! The rotation lifecycle: keys are created `next` (published ahead, RFC 7517 §5 via the
//! JWKS), promoted to `current` on schedule, `retired` (published until the tokens they
//! signed expire) and purged; an emergency retirement unpublishes a key at once. Every
//! change is one compare-and-swap in storage, so instances racing to rotate agree.

use std::sync::atomic::Ordering;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde::Serialize;
use time::OffsetDateTime;

use super::KeyError;
use super::material::{PrivateKey, generate_pkcs8};
use super::ring::KeyRing;
use super::snapshot::{KeyState, Snapshot};
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::jws::SigningAlg;
use crate::domain::signing_key::Stored;
use crate::storage::{KeyRetirement, Retired, SigningKeyRecord, StoreError};

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
        previous_state: Stored<KeyState>,
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

/// Whether `keys retire` puts a fresh key in the retired key's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Successor {
    Replace,
    /// Only for an algorithm no longer configured: see `KeyRing::retire_with`.
    None,
}

impl KeyRing {
    /// Refuses to write keys while the database holds keys this master key cannot read:
    /// they would be encrypted under a master key the other instances no longer have.
    pub(super) fn check_master(&self) -> Result<(), KeyError> {
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
            alg: alg.into(),
            state: state.into(),
            created_at: now,
            activated_at: (state == KeyState::Current).then_some(now),
            retired_at: None,
            remove_after: None,
        })
    }
}

/// Rotates the signing keys on schedule: every `every`, each configured algorithm whose
/// current key was activated `keys.rotation_interval` ago and whose next key has been
/// published for `keys.prepublication`. Losing the race to another instance is fine.
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
            client_id: None,
        };
        loop {
            ticks.tick().await;
            for &alg in ring.configured_algorithms() {
                let result = match ring.rotation_due(alg, rotation_interval, prepublication) {
                    RotationDue::No | RotationDue::Waiting => Ok(()),
                    RotationDue::NeedsNext => ring.ensure_next(alg).await,
                    RotationDue::NeedsCurrent => ring.ensure_current(alg).await,
                    RotationDue::Yes => ring.rotate_alg_by(alg, &actor).await.map(|_| ()),
                };
                if let Err(error) = result {
                    tracing::warn!(%error, %alg, "scheduled signing key rotation failed");
                }
            }
        }
    })
}
