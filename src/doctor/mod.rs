//! `portcullis doctor`: checks a deployment against what DESIGN.md and the security
//! defaults expect, with the same configuration the server would load, and says what to
//! change. It only reads: it never migrates, creates a database file or generates a key.
//! The checks live by what they look at: the settings, the master key, the database and
//! the signing keys in it; this file holds the report they make and runs them in order.

mod database;
mod master_key;
mod settings;
mod signing_keys;

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{Settings, redact_url};
use database::database;
use master_key::master_key;
use settings::{audit_retention, environment, issuer, password_hashing, proxies, token_lifetimes};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// One finding: which check, how it went, and what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub message: String,
}

fn check(check: &'static str, status: Status, message: impl Into<String>) -> Check {
    Check {
        check,
        status,
        message: message.into(),
    }
}

/// How long the database checks may take in all.
const DATABASE_CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Runs every check. `production` is whether `PORTCULLIS_ENV=production`; `now` the
/// current time (key ages).
pub async fn run(settings: &Settings, production: bool, now: OffsetDateTime) -> Vec<Check> {
    let mut out = vec![environment(production), issuer(settings)];
    out.push(proxies(settings));
    out.push(token_lifetimes(settings));
    out.push(password_hashing(settings));
    out.push(audit_retention(settings, production));
    let master = master_key(settings, production);
    let key = match master {
        Ok((found, key)) => {
            out.push(found);
            Some(key)
        }
        Err(failed) => {
            out.push(failed);
            None
        }
    };
    // A database that accepts connections but stalls must not hang the check.
    match tokio::time::timeout(
        DATABASE_CHECK_LIMIT,
        database(settings, production, key.as_ref(), now),
    )
    .await
    {
        Ok(checks) => out.extend(checks),
        Err(_) => out.push(check(
            "database",
            Status::Fail,
            format!(
                "{} did not answer within {}s",
                redact_url(&settings.database.url),
                DATABASE_CHECK_LIMIT.as_secs()
            ),
        )),
    }
    out
}
