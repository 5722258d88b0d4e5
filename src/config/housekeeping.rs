//! `[housekeeping]`: how often expired rows are purged, in what batches, and how long the
//! audit trail is kept.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DAY, invalid, within};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HousekeepingSettings {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub batch_size: u32,
    /// Audit events older than this are purged; zero keeps them for ever.
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
}

impl HousekeepingSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        within("housekeeping.interval", self.interval, 1, DAY)?;
        if !self.audit_retention.is_zero() {
            // A tiny value is a typo that would erase the trail: at least a day.
            within(
                "housekeeping.audit_retention",
                self.audit_retention,
                DAY,
                3650 * DAY,
            )?;
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return Err(invalid(
                "housekeeping.batch_size",
                "must be between 1 and 100000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    #[test]
    fn the_audit_trail_is_bounded_by_default() {
        let s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.housekeeping.audit_retention,
            std::time::Duration::from_secs(400 * 86_400),
            "a year and a month: what common audit policies ask, and bounded"
        );
    }
}
