//! `[tokens]`: lifetimes of access tokens, ID tokens, codes and refresh tokens, and the
//! `RefreshPolicy` built from them.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DAY, HOUR, MINUTE, invalid, span, within};
use crate::domain::refresh::{RefreshLifetime, RefreshPolicy};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    #[serde(with = "humantime_serde")]
    pub access_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub id_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub authorization_code_lifetime: Duration,
    /// Refresh tokens of confidential and native clients: idle / absolute lifetime.
    #[serde(with = "humantime_serde")]
    pub refresh_token_idle_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_token_absolute_lifetime: Duration,
    /// Refresh tokens of browser apps (SPA clients): idle / absolute lifetime.
    #[serde(with = "humantime_serde")]
    pub spa_refresh_token_idle_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub spa_refresh_token_absolute_lifetime: Duration,
    /// How long a just-rotated refresh token may be presented again by the same client
    /// to get back the same response (a retry, not a replay); zero turns it off.
    #[serde(with = "humantime_serde")]
    pub refresh_token_retry_window: Duration,
}

impl TokenSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // DESIGN.md: 10 minutes by default; anything beyond an hour defeats revocation.
        within(
            "tokens.access_token_lifetime",
            self.access_token_lifetime,
            MINUTE,
            HOUR,
        )?;
        within(
            "tokens.id_token_lifetime",
            self.id_token_lifetime,
            MINUTE,
            DAY,
        )?;
        // RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes is
        // RECOMMENDED."
        within(
            "tokens.authorization_code_lifetime",
            self.authorization_code_lifetime,
            1,
            10 * MINUTE,
        )?;
        for (idle_key, idle, absolute_key, absolute) in [
            (
                "tokens.refresh_token_idle_lifetime",
                self.refresh_token_idle_lifetime,
                "tokens.refresh_token_absolute_lifetime",
                self.refresh_token_absolute_lifetime,
            ),
            (
                "tokens.spa_refresh_token_idle_lifetime",
                self.spa_refresh_token_idle_lifetime,
                "tokens.spa_refresh_token_absolute_lifetime",
                self.spa_refresh_token_absolute_lifetime,
            ),
        ] {
            within(idle_key, idle, MINUTE, 365 * DAY)?;
            within(absolute_key, absolute, MINUTE, 365 * DAY)?;
            if idle > absolute {
                return Err(invalid(idle_key, "must not exceed the absolute lifetime"));
            }
        }
        within(
            "tokens.refresh_token_retry_window",
            self.refresh_token_retry_window,
            0,
            MINUTE,
        )
    }

    /// RFC 6749 §6 / RFC 9700 §4.14.2: refresh token lifetimes per kind of client, and
    /// the retry window of a rotated token.
    pub fn refresh_policy(&self) -> RefreshPolicy {
        RefreshPolicy {
            default: RefreshLifetime {
                idle: span(self.refresh_token_idle_lifetime),
                absolute: span(self.refresh_token_absolute_lifetime),
            },
            spa: RefreshLifetime {
                idle: span(self.spa_refresh_token_idle_lifetime),
                absolute: span(self.spa_refresh_token_absolute_lifetime),
            },
            retry_window: span(self.refresh_token_retry_window),
        }
    }
}
