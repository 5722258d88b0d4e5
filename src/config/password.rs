//! `[password]`: argon2id parameters, the hashing pool and the minimum length.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, MINUTE, invalid, within};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_concurrent: usize,
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    pub min_length: usize,
}

impl PasswordSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // SECURITY: OWASP's floor for argon2id is m=19 MiB, t=2, p=1 (or an equivalent trade).
        if !(8 * 1024..=4 * 1024 * 1024).contains(&self.memory_kib)
            || !(1..=100).contains(&self.iterations)
            || !(1..=64).contains(&self.parallelism)
        {
            return Err(invalid(
                "password.memory_kib",
                "argon2id needs memory_kib 8192..=4194304, iterations 1..=100, parallelism 1..=64",
            ));
        }
        within("password.queue_timeout", self.queue_timeout, 0, MINUTE)?;
        if !(8..=256).contains(&self.min_length) {
            return Err(invalid("password.min_length", "must be between 8 and 256"));
        }
        Ok(())
    }
}
