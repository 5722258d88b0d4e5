//! `[keys]`: the master key, and the signing keys' algorithms, reload and rotation.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DAY, HOUR, invalid, within};
use crate::domain::jws::SigningAlg;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub master_key_file: String,
    pub generate_master_key: bool,
    pub generated_master_key_file: String,
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// The current signing key is rotated this long after it became current.
    #[serde(with = "humantime_serde")]
    pub rotation_interval: Duration,
    /// How long a next key is published before it may start signing.
    #[serde(with = "humantime_serde")]
    pub prepublication: Duration,
    /// The algorithms signing keys are kept for; RS256 is required (OpenID Connect
    /// Discovery §3), ES256 and EdDSA are optional.
    pub algorithms: Vec<SigningAlg>,
}

/// The `Cache-Control: max-age` of JWKS responses (src/http/handlers/discovery.rs): a
/// relying party may not see a new key for this long, so pre-publication must be longer.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

impl KeySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        within("keys.reload_interval", self.reload_interval, 1, HOUR)?;
        within(
            "keys.rotation_interval",
            self.rotation_interval,
            HOUR,
            365 * DAY,
        )?;
        within("keys.prepublication", self.prepublication, 1, 90 * DAY)?;
        if self.prepublication <= JWKS_MAX_AGE {
            return Err(invalid(
                "keys.prepublication",
                "must be longer than the JWKS cache lifetime (5m)",
            ));
        }
        if self.rotation_interval <= self.prepublication {
            return Err(invalid(
                "keys.rotation_interval",
                "must be longer than keys.prepublication",
            ));
        }
        // OpenID Connect Discovery §3: id_token_signing_alg_values_supported "MUST include
        // RS256"; Core §15.1 requires providers to support it.
        if !self.algorithms.contains(&SigningAlg::RS256) {
            return Err(invalid("keys.algorithms", "must include RS256"));
        }
        let mut algorithms = self.algorithms.clone();
        algorithms.sort();
        algorithms.dedup();
        if algorithms.len() != self.algorithms.len() {
            return Err(invalid("keys.algorithms", "lists an algorithm twice"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn key_rotation_settings_are_consistent() {
        let check = |rotation: u64, prepublication: u64| {
            let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
            s.keys.rotation_interval = Duration::from_secs(rotation);
            s.keys.prepublication = Duration::from_secs(prepublication);
            match s.validated() {
                Ok(_) => None,
                Err(ConfigError::Invalid { key, .. }) => Some(key),
                Err(other) => panic!("{other:?}"),
            }
        };
        assert_eq!(check(30 * 86_400, 86_400), None);
        // Relying parties cache the JWKS for 5 minutes: a shorter pre-publication would
        // let tokens arrive signed by a key they have not fetched.
        assert_eq!(check(30 * 86_400, 300), Some("keys.prepublication"));
        assert_eq!(check(86_400, 86_400), Some("keys.rotation_interval"));
        assert_eq!(check(7200, 3 * 3600), Some("keys.rotation_interval"));
        // The JWKS handler's Cache-Control matches JWKS_MAX_AGE.
        let handler = include_str!("../http/handlers/discovery.rs");
        assert!(handler.contains(&format!("max-age={}", JWKS_MAX_AGE.as_secs())));
    }
}
