//! Users: accounts, their password hashes, profiles and state.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use crate::audit::AuditEvent;
use crate::domain::user::{NewUser, PasswordHash, User, UserId, UserProfile, Username};

/// Why a password hash is replaced.
#[derive(Debug, Clone, Copy)]
pub enum PasswordChange<'a> {
    /// An administrative change: every session of the user ends and any lockout of the
    /// account name is lifted (when its key is known: `None` leaves the counter to expire),
    /// audited.
    Reset {
        throttle_key: Option<&'a str>,
        audit: &'a AuditEvent,
    },
    /// A transparent upgrade at sign-in: only if the stored hash is still `previous`.
    Rehash { previous: &'a PasswordHash },
}

/// The `users` table (deleting or disabling a user also ends what hangs off it).
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(
        &self,
        user: &NewUser,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<User, StoreError>;
    async fn find_user(
        &self,
        username: &Username,
    ) -> Result<Option<(User, Option<PasswordHash>)>, StoreError>;
    async fn find_user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;
    async fn list_users(&self, limit: u32) -> Result<Vec<User>, StoreError>;
    /// Users ordered by username, after `after` (a cursor), at most `limit`.
    async fn list_users_after(
        &self,
        after: Option<&Username>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError>;
    /// Replaces the password hash.
    async fn set_password_hash(
        &self,
        id: UserId,
        hash: &PasswordHash,
        now: OffsetDateTime,
        change: PasswordChange<'_>,
    ) -> Result<bool, StoreError>;
    /// Disabling also revokes every session of the user.
    async fn set_user_disabled(
        &self,
        id: UserId,
        disabled: bool,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Replaces a user's profile (email, its verification, name); `None` when no such user.
    async fn update_user_profile(
        &self,
        id: UserId,
        profile: &UserProfile,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<Option<User>, StoreError>;
    /// Deletes a user: their sessions and consents go with them (foreign keys), as do
    /// their pending authorization codes and the lockout counter of their name
    /// (`throttle_key`, when known). Audit rows stay (they have no foreign keys).
    async fn delete_user(
        &self,
        id: UserId,
        throttle_key: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
}
