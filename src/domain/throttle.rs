//! Per-account sign-in throttling: consecutive failures lead to a lockout that doubles
//! with each further failure, up to a cap. Only verified wrong passwords count; an
//! attempt in flight holds a lease on the remaining budget instead, so a burst of guesses
//! cannot outrun the limit and an overloaded server does not lock out the right user. Keyed by the account *name*, whether or not
//! such an account exists, so lockouts reveal nothing about which accounts exist.

use aws_lc_rs::hmac;
use time::{Duration, OffsetDateTime};

use super::user::Username;

#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub max_failures: u32,
    /// Failures older than this start a fresh count.
    pub failure_window: Duration,
    pub lockout_base: Duration,
    pub lockout_max: Duration,
    /// How long an attempt in flight may hold its share of the budget before the lease
    /// lapses (longer than any password check takes, queueing included).
    pub attempt_lease: Duration,
}

impl ThrottlePolicy {
    /// How long to lock after the `failures`-th consecutive failure, if at all:
    /// `base * 2^(failures - max)`, capped.
    pub fn lockout_after(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.max_failures)?;
        let factor = 1i32.checked_shl(over.min(20)).unwrap_or(i32::MAX);
        let lock = self
            .lockout_base
            .checked_mul(factor)
            .unwrap_or(self.lockout_max);
        Some(lock.min(self.lockout_max))
    }

    /// The start of the window in which earlier failures still count.
    pub fn window_start(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.failure_window
    }
}

/// One sign-in attempt's share of an account's failure budget, while its password is
/// checked. Ended exactly once, by this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseId(pub uuid::Uuid);

impl LeaseId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for LeaseId {
    fn default() -> Self {
        Self::new()
    }
}

/// The state of one throttle key after a failure was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    pub failures: u32,
    pub locked_until: Option<OffsetDateTime>,
}

/// Whole seconds until `until`, at least 1: the `Retry-After` value.
pub fn retry_after_secs(now: OffsetDateTime, until: OffsetDateTime) -> u64 {
    u64::try_from((until - now).whole_seconds())
        .unwrap_or(0)
        .max(1)
}

/// Turns a typed account name into its throttle key: HMAC-SHA256 under a server secret
/// (derived from the master key), hex-encoded.
///
/// SECURITY: people type passwords into the name field. An unsalted hash of it would be
/// recovered by a dictionary attack on a leaked table; without the server secret a keyed
/// hash cannot even be tested against a guess.
#[derive(Clone)]
pub struct ThrottleKeys(hmac::Key);

impl ThrottleKeys {
    /// Bytes of a secret no client ever sees; 32 random bytes or an HKDF output.
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The key of a typed name: of its canonical form when it is a valid username, else
    /// of the trimmed, lower-cased input, so every spelling of one account shares one
    /// counter.
    pub fn key(&self, username: Option<&Username>, raw: &str) -> String {
        let name = username.map_or_else(|| raw.trim().to_lowercase(), |u| u.as_str().to_owned());
        let tag = hmac::sign(&self.0, name.as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key of an existing account.
    pub fn of_user(&self, username: &Username) -> String {
        self.key(Some(username), username.as_str())
    }
}

impl std::fmt::Debug for ThrottleKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThrottleKeys(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_keys_depend_on_the_secret_and_fold_case() {
        let a = ThrottleKeys::new(&[1; 32]);
        let b = ThrottleKeys::new(&[2; 32]);
        let alice = Username::parse("Alice").unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a.of_user(&alice), b.of_user(&alice));
        assert_eq!(a.key(Some(&alice), "Alice"), a.key(None, "  ALICE "));
        assert_eq!(a.of_user(&alice), a.key(None, "alice"));
        assert_ne!(a.key(None, "alice"), a.key(None, "bob"));
        let typed = "Correct Horse Battery Staple";
        assert_eq!(a.key(None, typed), a.key(None, &typed.to_lowercase()));
        assert_eq!(a.key(None, typed).len(), 64);
        // Never the bare SHA-256 of the name.
        use sha2::{Digest as _, Sha256};
        let bare: String = Sha256::digest(b"correct horse battery staple")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(a.key(None, typed), bare);
        assert_eq!(format!("{a:?}"), "ThrottleKeys(..)");
    }

    #[test]
    fn lockout_doubles_and_is_capped() {
        let p = ThrottlePolicy {
            max_failures: 3,
            failure_window: Duration::minutes(15),
            lockout_base: Duration::minutes(1),
            lockout_max: Duration::minutes(15),
            attempt_lease: Duration::seconds(35),
        };
        assert_eq!(p.lockout_after(1), None);
        assert_eq!(p.lockout_after(2), None);
        assert_eq!(p.lockout_after(3), Some(Duration::minutes(1)));
        assert_eq!(p.lockout_after(4), Some(Duration::minutes(2)));
        assert_eq!(p.lockout_after(6), Some(Duration::minutes(8)));
        assert_eq!(p.lockout_after(7), Some(Duration::minutes(15)));
        assert_eq!(p.lockout_after(u32::MAX), Some(Duration::minutes(15)));
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(retry_after_secs(now, now), 1);
        assert_eq!(retry_after_secs(now, now + Duration::seconds(90)), 90);
    }
}
