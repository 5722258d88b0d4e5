//! `[login]`: sign-in forms and their throttles (per account and per IP), and the
//! `ThrottlePolicy` built from them.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DAY, MINUTE, invalid, span, within};
use crate::domain::throttle::ThrottlePolicy;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSettings {
    #[serde(with = "humantime_serde")]
    pub transaction_lifetime: Duration,
    pub max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    #[serde(with = "humantime_serde")]
    pub lockout_base: Duration,
    #[serde(with = "humantime_serde")]
    pub lockout_max: Duration,
    pub ip_max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub ip_window: Duration,
    pub forms_per_ip_per_minute: u32,
    /// Every user signs in with a second factor; one without any is sent to set one up
    /// at their next sign-in and cannot use an application until they have.
    #[serde(default)]
    pub require_mfa: bool,
}

impl LoginSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        within(
            "login.transaction_lifetime",
            self.transaction_lifetime,
            MINUTE,
            DAY,
        )?;
        if self.max_failures == 0 || self.max_failures > 1000 {
            return Err(invalid("login.max_failures", "must be between 1 and 1000"));
        }
        within("login.failure_window", self.failure_window, 1, 7 * DAY)?;
        within("login.lockout_base", self.lockout_base, 1, DAY)?;
        within("login.lockout_max", self.lockout_max, 1, 7 * DAY)?;
        if self.lockout_max < self.lockout_base {
            return Err(invalid(
                "login.lockout_max",
                "must be at least login.lockout_base",
            ));
        }
        if self.ip_max_failures == 0 {
            return Err(invalid("login.ip_max_failures", "must be at least 1"));
        }
        within("login.ip_window", self.ip_window, 1, DAY)?;
        if self.forms_per_ip_per_minute == 0 {
            return Err(invalid(
                "login.forms_per_ip_per_minute",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The per-account throttle. `password_queue_timeout` is `password.queue_timeout`:
    /// how long a check may wait for the hashing pool.
    pub fn throttle_policy(&self, password_queue_timeout: Duration) -> ThrottlePolicy {
        ThrottlePolicy {
            max_failures: self.max_failures,
            failure_window: span(self.failure_window),
            lockout_base: span(self.lockout_base),
            lockout_max: span(self.lockout_max),
            // A check waits at most `queue_timeout` for the hashing pool and takes well
            // under a second; the margin covers a slow or saturated database (a
            // lapsed lease only lets one more check run at once; its verdict counts).
            attempt_lease: span(password_queue_timeout) + time::Duration::minutes(2),
        }
    }
}
