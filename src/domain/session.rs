//! Browser sessions: server-side rows behind an opaque cookie, with idle and absolute
//! lifetimes.

use serde::Serialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::user::UserId;

/// The public identifier of a browser session (later the `sid` claim). Not a secret: the
/// cookie holds a separate 256-bit value of which only the hash is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub Uuid);

impl SessionId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_timeout: Duration,
    pub absolute_lifetime: Duration,
    /// Activity is persisted at most this often, so reads stay reads.
    pub touch_interval: Duration,
}

impl SessionPolicy {
    /// Expiry instants for a session created at `now`: (idle, absolute).
    pub fn expiry_for_new(&self, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
        let absolute = now + self.absolute_lifetime;
        ((now + self.idle_timeout).min(absolute), absolute)
    }

    /// The idle expiry after activity at `now`; never beyond the absolute limit.
    pub fn idle_expiry_after_activity(
        &self,
        now: OffsetDateTime,
        absolute_expires_at: OffsetDateTime,
    ) -> OffsetDateTime {
        (now + self.idle_timeout).min(absolute_expires_at)
    }

    pub fn needs_touch(&self, session: &BrowserSession, now: OffsetDateTime) -> bool {
        now - session.last_seen_at >= self.touch_interval
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BrowserSession {
    pub id: SessionId,
    pub user_id: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub auth_time: OffsetDateTime,
    /// Authentication methods references (RFC 8176), e.g. `["pwd"]`: `factors.amr()`.
    pub amr: Vec<String>,
    /// The factors the user authenticated with and when (a step-up adds one).
    pub factors: crate::domain::mfa::SessionFactors,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub idle_expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub absolute_expires_at: OffsetDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl BrowserSession {
    /// An expired session is no session, even before housekeeping deletes it.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        now < self.idle_expires_at && now < self.absolute_expires_at
    }

    /// Seconds left until the absolute limit: the cookie's Max-Age.
    pub fn remaining_absolute(&self, now: OffsetDateTime) -> Duration {
        (self.absolute_expires_at - now).max(Duration::ZERO)
    }
}

/// Longest user agent string kept with a session.
pub const MAX_USER_AGENT_LEN: usize = 512;

/// A short human description of a user agent ("Firefox on Linux") for the account page.
pub fn describe_device(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|u| !u.is_empty()) else {
        return "Unknown device".into();
    };
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("OPR/") {
        "Opera"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else if ua.starts_with("curl/") {
        "curl"
    } else {
        "Unknown browser"
    };
    let os = if ua.contains("Android") {
        "Android"
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        "iOS"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macOS"
    } else if ua.contains("CrOS") {
        "ChromeOS"
    } else if ua.contains("Linux") {
        "Linux"
    } else {
        ""
    };
    if os.is_empty() {
        browser.into()
    } else {
        format!("{browser} on {os}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SessionPolicy {
        SessionPolicy {
            idle_timeout: Duration::hours(1),
            absolute_lifetime: Duration::hours(8),
            touch_interval: Duration::minutes(1),
        }
    }

    #[test]
    fn idle_expiry_never_passes_the_absolute_limit() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let (idle, absolute) = policy().expiry_for_new(now);
        assert_eq!(idle, now + Duration::hours(1));
        assert_eq!(absolute, now + Duration::hours(8));
        let late = now + Duration::minutes(7 * 60 + 30);
        assert_eq!(
            policy().idle_expiry_after_activity(late, absolute),
            absolute
        );
    }

    #[test]
    fn devices_are_described() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(describe_device(Some(chrome)), "Chrome on Linux");
        let ff = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";
        assert_eq!(describe_device(Some(ff)), "Firefox on Windows");
        assert_eq!(describe_device(None), "Unknown device");
    }
}
