//! `[session]`: the browser session behind the login cookie, and the `SessionPolicy` built
//! from it.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DAY, MINUTE, invalid, span, within};
use crate::domain::session::SessionPolicy;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub absolute_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub touch_interval: Duration,
}

impl SessionSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        within("session.idle_timeout", self.idle_timeout, MINUTE, 30 * DAY)?;
        within(
            "session.absolute_lifetime",
            self.absolute_lifetime,
            MINUTE,
            90 * DAY,
        )?;
        if self.absolute_lifetime < self.idle_timeout {
            return Err(invalid(
                "session.absolute_lifetime",
                "must be at least session.idle_timeout",
            ));
        }
        if self.touch_interval * 2 > self.idle_timeout {
            return Err(invalid(
                "session.touch_interval",
                "must be at most half of session.idle_timeout",
            ));
        }
        Ok(())
    }

    /// Idle and absolute expiry of browser sessions, and how often activity is saved.
    pub fn policy(&self) -> SessionPolicy {
        SessionPolicy {
            idle_timeout: span(self.idle_timeout),
            absolute_lifetime: span(self.absolute_lifetime),
            touch_interval: span(self.touch_interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, Settings};

    #[test]
    fn durations_are_bounded() {
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        s.session.absolute_lifetime = std::time::Duration::from_secs(10_000 * 365 * 86_400);
        assert!(matches!(
            s.validated(),
            Err(ConfigError::Invalid {
                key: "session.absolute_lifetime",
                ..
            })
        ));
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        s.session.touch_interval = s.session.idle_timeout;
        assert!(matches!(
            s.validated(),
            Err(ConfigError::Invalid {
                key: "session.touch_interval",
                ..
            })
        ));
    }
}
