//! Refresh-token rules (RFC 6749 §6, RFC 9700 §4.14.2, OAuth 2.0 for Browser-Based Apps
//! §6.1): families, lifetimes per client kind, the idempotent retry window.

use serde::Serialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::client::ClientKind;
use super::scope::ScopeSet;

/// All refresh tokens descending from one authorization belong to one family; reuse of
/// any rotated member revokes the whole family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct FamilyId(pub Uuid);

impl FamilyId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for FamilyId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for FamilyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The scope that asks for a refresh token outliving the browser session (OpenID Connect
/// Core §11).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Whether a refresh-token family granted `scope` outlives the browser session it was
/// issued in (OpenID Connect Core §11: `offline_access` asks for access while the user is
/// not signed in); otherwise the family ends with the session.
pub fn outlives_session(scope: &ScopeSet) -> bool {
    scope.contains(OFFLINE_ACCESS)
}

/// Idle and absolute lifetime of a family's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshLifetime {
    /// A token unused this long expires.
    pub idle: Duration,
    /// No token of the family outlives `created + absolute`; rotation never extends it.
    pub absolute: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Confidential and native clients.
    pub default: RefreshLifetime,
    /// Browser apps: shorter, because a token in a browser is easier to steal.
    pub spa: RefreshLifetime,
    /// See `tokens.refresh_token_retry_window`; zero turns it off.
    pub retry_window: Duration,
}

impl RefreshPolicy {
    pub fn lifetime_for(&self, kind: ClientKind) -> RefreshLifetime {
        match kind {
            ClientKind::Spa => self.spa,
            ClientKind::Confidential | ClientKind::Native => self.default,
        }
    }

    /// Expiry instants of a new family created at `now`: (first token's idle, absolute).
    pub fn new_family(
        &self,
        kind: ClientKind,
        now: OffsetDateTime,
    ) -> (OffsetDateTime, OffsetDateTime) {
        let l = self.lifetime_for(kind);
        let absolute = now + l.absolute;
        ((now + l.idle).min(absolute), absolute)
    }

    /// The idle expiry of a successor issued at `now`: never beyond the family's absolute
    /// limit.
    pub fn successor_idle_expiry(
        &self,
        kind: ClientKind,
        now: OffsetDateTime,
        absolute_expires_at: OffsetDateTime,
    ) -> OffsetDateTime {
        (now + self.lifetime_for(kind).idle).min(absolute_expires_at)
    }

    /// Whether a presentation at `now` of a rotated token whose retry window ends at
    /// `until` (the rotating instance's clock + the window) is still a retry. Compared in
    /// whole seconds, the precision SQLite stores, so the window never shrinks.
    pub fn is_retry(&self, until: OffsetDateTime, now: OffsetDateTime) -> bool {
        self.retry_window > Duration::ZERO && now.unix_timestamp() <= until.unix_timestamp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(window: i64) -> RefreshPolicy {
        RefreshPolicy {
            default: RefreshLifetime {
                idle: Duration::days(14),
                absolute: Duration::days(30),
            },
            spa: RefreshLifetime {
                idle: Duration::hours(1),
                absolute: Duration::hours(24),
            },
            retry_window: Duration::seconds(window),
        }
    }

    #[test]
    fn lifetimes_depend_on_the_client_kind() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let p = policy(10);
        assert_eq!(
            p.new_family(ClientKind::Spa, now),
            (now + Duration::hours(1), now + Duration::hours(24))
        );
        assert_eq!(
            p.new_family(ClientKind::Native, now),
            (now + Duration::days(14), now + Duration::days(30))
        );
    }

    #[test]
    fn rotation_never_extends_the_absolute_limit() {
        let p = policy(10);
        let start = OffsetDateTime::UNIX_EPOCH;
        let (_, absolute) = p.new_family(ClientKind::Confidential, start);
        let late = start + Duration::days(29);
        assert_eq!(
            p.successor_idle_expiry(ClientKind::Confidential, late, absolute),
            absolute
        );
        let early = start + Duration::days(1);
        assert_eq!(
            p.successor_idle_expiry(ClientKind::Confidential, early, absolute),
            early + Duration::days(14)
        );
    }

    #[test]
    fn the_retry_window_ends_at_its_second_and_can_be_off() {
        let until = OffsetDateTime::UNIX_EPOCH + Duration::seconds(10);
        assert!(policy(10).is_retry(until, until));
        assert!(policy(10).is_retry(until, until + Duration::milliseconds(900)));
        assert!(!policy(10).is_retry(until, until + Duration::seconds(1)));
        assert!(!policy(0).is_retry(until, until));
    }

    #[test]
    fn only_offline_access_outlives_the_session() {
        assert!(outlives_session(&ScopeSet::from_tokens([
            "openid",
            OFFLINE_ACCESS
        ])));
        assert!(!outlives_session(&ScopeSet::from_tokens([
            "openid", "profile"
        ])));
        assert!(!outlives_session(&ScopeSet::from_tokens(["offline"])));
    }
}
