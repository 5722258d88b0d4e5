//! argon2id password hashing on a bounded blocking pool: a flood of sign-ins waits for a
//! permit (or gets 429) instead of starving the async workers that serve tokens.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHashString, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
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
    queue_timeout: Duration,
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
        let permits = match settings.max_concurrent {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let dummy = hash_blocking(&params, "portcullis dummy password for timing")?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(permits)),
            queue_timeout: settings.queue_timeout,
            dummy_hash: Arc::new(dummy),
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
        self.run_blocking(move || {
            let (phc, real) = match &stored {
                Some(h) => match PasswordHashString::new(&h.0) {
                    Ok(phc) => (phc, true),
                    Err(_) => ((*dummy).clone(), false),
                },
                None => ((*dummy).clone(), false),
            };
            let parsed = phc.password_hash();
            let ok = argon2_for(&params)
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok();
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

    async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))
    }
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
