//! argon2id password hashing on a bounded blocking pool: a flood of sign-ins waits for a
//! permit (or gets 429) instead of starving the async workers that serve tokens.
//!
//! Verification (every sign-in) reuses one preallocated argon2 memory area per permit:
//! allocating 19 MiB per attempt made glibc keep freed areas in per-thread arenas, and a
//! burst of sign-ins left the process at hundreds of MiB (docs/benchmarks.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use std::sync::Mutex;

use argon2::password_hash::{PasswordHashString, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::config::PasswordSettings;
use crate::domain::user::{Password, PasswordHash};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every permit stayed busy for the whole queue timeout.
    #[error("password hashing is saturated")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The result of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The stored hash uses weaker parameters than configured now.
    pub needs_rehash: bool,
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// At most one area per permit, allocated on first use and kept.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    queue_timeout: Duration,
    /// Slots in all; waiting or running now; refused for want of a slot (metrics).
    capacity: usize,
    in_flight: Arc<AtomicUsize>,
    rejected: Arc<AtomicU64>,
    /// SECURITY: unknown users are verified against this so that timing does not reveal
    /// which accounts exist.
    dummy_hash: Arc<PasswordHashString>,
}

impl PasswordHasher {
    pub fn new(settings: &PasswordSettings) -> Result<Self, HashError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| HashError::Failed(e.to_string()))?;
        // Default: one core fewer than the machine has (at least one), so that a flood of
        // sign-ins never takes the core that serves tokens.
        let permits = match settings.max_concurrent {
            0 => {
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
            }
            n => n,
        };
        let dummy = hash_blocking(&params, "portcullis dummy password for timing")?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(permits)),
            queue_timeout: settings.queue_timeout,
            capacity: permits,
            in_flight: Arc::default(),
            rejected: Arc::default(),
            dummy_hash: Arc::new(dummy),
            memory: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub async fn hash(&self, password: Password) -> Result<PasswordHash, HashError> {
        let params = self.params.clone();
        let hash = self
            .run_blocking(move || hash_blocking(&params, password.expose()))
            .await??;
        Ok(PasswordHash(hash.to_string()))
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no
    /// stored hash (unknown user), which then never matches.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<PasswordHash>,
    ) -> Result<Verification, HashError> {
        let params = self.params.clone();
        let dummy = Arc::clone(&self.dummy_hash);
        let pool = Arc::clone(&self.memory);
        self.run_blocking(move || {
            let (phc, real) = match &stored {
                Some(h) => match PasswordHashString::new(&h.0) {
                    Ok(phc) => (phc, true),
                    Err(_) => ((*dummy).clone(), false),
                },
                None => ((*dummy).clone(), false),
            };
            let parsed = phc.password_hash();
            let mut memory = take_memory(&pool, params.block_count());
            let ok = verify_with_memory(password.expose().as_bytes(), &parsed, &mut memory);
            give_memory(&pool, memory, params.block_count());
            let needs_rehash = real
                && Params::try_from(&parsed)
                    .map(|p| {
                        p.m_cost() < params.m_cost()
                            || p.t_cost() < params.t_cost()
                            || p.p_cost() < params.p_cost()
                    })
                    .unwrap_or(true);
            Verification {
                matches: ok && real,
                needs_rehash: ok && needs_rehash,
            }
        })
        .await
    }

    #[cfg(test)]
    fn permits_total(&self) -> usize {
        // Nothing holds a permit between calls in the tests.
        self.permits.available_permits()
    }

    /// How many hashes may run at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Hashes running or waiting for a slot now.
    pub fn in_use(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Hashes refused because no slot freed up within `password.queue_timeout`.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        // Counted down however this ends: refused, finished, or the request dropped while
        // waiting. Once the hash runs, it counts until the blocking task ends, even if
        // the request that asked for it is gone (the slot is busy until then).
        let done = CountDown(Arc::clone(&self.in_flight));
        let permit =
            match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                _ => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(HashError::Busy);
                }
            };
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            drop(done);
            out
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))
    }
}

/// Decrements the counter when dropped.
struct CountDown(Arc<AtomicUsize>);

impl Drop for CountDown {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A memory area of at least `blocks` blocks: a pooled one, or a new one.
fn take_memory(pool: &Mutex<Vec<Vec<Block>>>, blocks: usize) -> Vec<Block> {
    pool.lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .unwrap_or_else(|| vec![Block::default(); blocks])
}

/// Returns a configured-size area to the pool (odd sizes from old hashes are dropped).
fn give_memory(pool: &Mutex<Vec<Vec<Block>>>, memory: Vec<Block>, blocks: usize) {
    if memory.len() == blocks {
        pool.lock().unwrap_or_else(|e| e.into_inner()).push(memory);
    }
}

/// Recomputes the hash of `password` with the stored hash's own algorithm, version,
/// parameters and salt, in `memory`, and compares in constant time.
fn verify_with_memory(
    password: &[u8],
    stored: &argon2::password_hash::PasswordHash<'_>,
    memory: &mut Vec<Block>,
) -> bool {
    let mut verify = || -> Option<bool> {
        let algorithm = Algorithm::try_from(stored.algorithm).ok()?;
        let version = match stored.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::V0x13,
        };
        let params = Params::try_from(stored).ok()?;
        let expected = stored.hash?;
        let mut salt = [0u8; 64];
        let salt = stored.salt?.decode_b64(&mut salt).ok()?;
        let needed = params.block_count();
        if memory.len() < needed {
            // A hash made with more memory than configured now: a one-off area.
            *memory = vec![Block::default(); needed];
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..needed])
            .ok()?;
        Some(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
    };
    verify().unwrap_or(false)
}

fn argon2_for(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<PasswordHashString, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2_for(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.serialize())
        .map_err(|e| HashError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn hasher() -> PasswordHasher {
        let settings = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        PasswordHasher::new(&settings.password).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pw(s: &str) -> Password {
        Password::presented(s.into()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hasher();
        let hash = h
            .hash(pw("correct horse"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(hash.0.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let ok = h.verify(pw("correct horse"), Some(hash.clone())).await;
        assert_eq!(
            ok.ok(),
            Some(Verification {
                matches: true,
                needs_rehash: false
            })
        );
        let bad = h.verify(pw("wrong horse"), Some(hash)).await;
        assert_eq!(bad.ok().map(|v| v.matches), Some(false));
    }

    #[tokio::test]
    async fn unknown_users_and_garbage_hashes_never_match() {
        let h = hasher();
        let dummy_pw = "portcullis dummy password for timing";
        assert_eq!(
            h.verify(pw(dummy_pw), None).await.ok().map(|v| v.matches),
            Some(false)
        );
        let garbage = Some(PasswordHash("not a phc string".into()));
        assert_eq!(
            h.verify(pw(dummy_pw), garbage)
                .await
                .ok()
                .map(|v| v.matches),
            Some(false)
        );
    }

    #[tokio::test]
    async fn verification_reuses_a_bounded_set_of_memory_areas() {
        let h = hasher();
        let hash = h
            .hash(pw("correct horse"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let attempts = (0..12).map(|i| {
            let h = h.clone();
            let hash = hash.clone();
            tokio::spawn(async move {
                h.verify(
                    pw(if i % 2 == 0 { "correct horse" } else { "wrong" }),
                    Some(hash),
                )
                .await
            })
        });
        let mut matches = 0;
        for a in attempts.collect::<Vec<_>>() {
            if a.await.ok().and_then(Result::ok).is_some_and(|v| v.matches) {
                matches += 1;
            }
        }
        assert_eq!(matches, 6);
        let pooled = h.memory.lock().map(|m| m.len()).unwrap_or(usize::MAX);
        assert!(pooled >= 1 && pooled <= h.permits_total(), "{pooled} areas");
    }

    #[tokio::test]
    async fn weaker_stored_parameters_ask_for_a_rehash() {
        let weak = Params::new(8192, 1, 1, None).unwrap_or_else(|e| panic!("{e}"));
        let old = hash_blocking(&weak, "pw-pw-pw-pw").unwrap_or_else(|e| panic!("{e}"));
        let v = hasher()
            .verify(pw("pw-pw-pw-pw"), Some(PasswordHash(old.to_string())))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(v.matches && v.needs_rehash);
    }
}
