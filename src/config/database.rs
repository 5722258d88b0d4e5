//! `[database]`: where the data lives, and how its URL is shown without its password.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{ConfigError, MINUTE, invalid, within};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub migrate_on_start: bool,
}

impl DatabaseSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("postgres://")
            || self.url.starts_with("postgresql://")
            || self.url.starts_with("sqlite:"))
        {
            return Err(invalid(
                "database.url",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        if self.max_connections == 0 || self.max_connections > 1000 {
            return Err(invalid(
                "database.max_connections",
                "must be between 1 and 1000",
            ));
        }
        within("database.connect_timeout", self.connect_timeout, 1, MINUTE)
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

/// A database URL without its password (in the userinfo or the query), for messages.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = Url::parse(raw) else {
        // Unparseable (say, a password with an unencoded `/` or `#`): mask everything
        // between the scheme and the last `@`, where a password would be, and drop any
        // query, rather than echo it.
        let Some((scheme, rest)) = raw.split_once("://") else {
            return "(an unparseable database URL)".to_owned();
        };
        let (masked, host) = match rest.rsplit_once('@') {
            Some((_, host)) => ("REDACTED@", host),
            None => ("", rest),
        };
        let host = host.split(['?', '#']).next().unwrap_or_default();
        return format!("{scheme}://{masked}{host}");
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("REDACTED"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret =
                    k.eq_ignore_ascii_case("password") || k.to_ascii_lowercase().contains("secret");
                (
                    k.into_owned(),
                    if secret {
                        "REDACTED".to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/p?sslmode=require&password=x"),
            "postgres://app:REDACTED@db:5432/p?sslmode=require&password=REDACTED"
        );
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        s.database.url = "postgres://app:hunter2@db/p".into();
        assert!(!format!("{s:?}").contains("hunter2"));
        // A password that breaks URL parsing is masked, not echoed.
        let shown = redact_url("postgres://app:pa/ss#w?rd@db.internal:5432/p");
        assert!(
            !shown.contains("pa/ss") && !shown.contains("rd@"),
            "{shown}"
        );
        assert_eq!(shown, "postgres://REDACTED@db.internal:5432/p");
        assert_eq!(
            redact_url("not a url at all"),
            "(an unparseable database URL)"
        );
    }
}
