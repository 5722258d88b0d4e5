//! User and session administration, shared by the CLI and the admin API: the same
//! validation, the same argon2id pool, the same audit rows whichever door an
//! administrator comes through.

use time::OffsetDateTime;

use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::session::{BrowserSession, SessionId};
use crate::domain::throttle::ThrottleKeys;
use crate::domain::user::{
    NewUser, Password, PasswordError, ProfileError, User, UserId, UserProfile, Username,
    UsernameError, parse_email, parse_name,
};
use crate::password::{HashError, PasswordHasher};
use crate::storage::{PasswordChange, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Username(#[from] UsernameError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The username is taken.
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for UserError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(what),
            other => Self::Store(other),
        }
    }
}

/// A new account as an administrator describes it; validated by `create`.
#[derive(Debug)]
pub struct NewAccount {
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// `None`: the account cannot sign in until a password is set.
    pub password: Option<Password>,
}

/// A change of profile; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub email: Option<Option<String>>,
    pub name: Option<Option<String>>,
    /// Unless set, a new email address starts unverified.
    pub email_verified: Option<bool>,
}

impl ProfileChange {
    fn fields(&self) -> Vec<&'static str> {
        [
            ("email", self.email.is_some()),
            ("name", self.name.is_some()),
            ("email_verified", self.email_verified.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// Validates and creates an account; the password is hashed on the argon2id pool.
pub async fn create(
    store: &dyn Store,
    hasher: &PasswordHasher,
    account: NewAccount,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<User, UserError> {
    let username = Username::parse(&account.username)?;
    let email = match account.email.as_deref() {
        Some(raw) => parse_email(raw)?,
        None => None,
    };
    let name = match account.name.as_deref() {
        Some(raw) => parse_name(raw)?,
        None => None,
    };
    let password_hash = match account.password {
        Some(password) => Some(hasher.hash(password).await?),
        None => None,
    };
    let audit = AuditEvent::new(now, AuditKind::UserCreated, Outcome::Success, actor)
        .detail("username", username.as_str());
    let user = store
        .create_user(
            &NewUser {
                username,
                email,
                name,
                password_hash,
            },
            now,
            &audit,
        )
        .await?;
    Ok(user)
}

pub async fn find(store: &dyn Store, id: UserId) -> Result<User, UserError> {
    store.find_user_by_id(id).await?.ok_or(UserError::NotFound)
}

pub async fn find_by_name(store: &dyn Store, username: &str) -> Result<User, UserError> {
    let name = Username::parse(username)?;
    match store.find_user(&name).await? {
        Some((user, _)) => Ok(user),
        None => Err(UserError::NotFound),
    }
}

/// Changes email, its verification and the display name.
pub async fn update_profile(
    store: &dyn Store,
    id: UserId,
    change: ProfileChange,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<User, UserError> {
    let current = find(store, id).await?;
    let email = match &change.email {
        Some(Some(raw)) => parse_email(raw)?,
        Some(None) => None,
        None => current.email.clone(),
    };
    let name = match &change.name {
        Some(Some(raw)) => parse_name(raw)?,
        Some(None) => None,
        None => current.name.clone(),
    };
    // A different address has not been verified by anyone yet.
    let email_verified = change
        .email_verified
        .unwrap_or(current.email_verified && email == current.email);
    if email_verified && email.is_none() {
        return Err(ProfileError::NoEmailToVerify.into());
    }
    let audit = AuditEvent::new(now, AuditKind::UserUpdated, Outcome::Success, actor)
        .user(id)
        .detail("fields", change.fields());
    let profile = UserProfile {
        email,
        email_verified,
        name,
    };
    store
        .update_user_profile(id, &profile, now, &audit)
        .await?
        .ok_or(UserError::NotFound)
}

/// Replaces the password, ends every session of the user and lifts any lockout of the
/// account name (the same path as `users set-password`). Without `throttle_keys` (a CLI
/// with no master key) the lockout is left to expire.
pub async fn set_password(
    store: &dyn Store,
    hasher: &PasswordHasher,
    throttle_keys: Option<&ThrottleKeys>,
    user: &User,
    password: Password,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<(), UserError> {
    let hash = hasher.hash(password).await?;
    let audit =
        AuditEvent::new(now, AuditKind::UserPasswordChanged, Outcome::Success, actor).user(user.id);
    let key = throttle_keys.map(|k| k.of_user(&user.username));
    let change = PasswordChange::Reset {
        throttle_key: key.as_deref(),
        audit: &audit,
    };
    if !store.set_password_hash(user.id, &hash, now, change).await? {
        return Err(UserError::NotFound);
    }
    Ok(())
}

/// Disables (ending every session) or re-enables a user; false when it already was.
pub async fn set_disabled(
    store: &dyn Store,
    id: UserId,
    disabled: bool,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<bool, StoreError> {
    let kind = if disabled {
        AuditKind::UserDisabled
    } else {
        AuditKind::UserEnabled
    };
    let audit = AuditEvent::new(now, kind, Outcome::Success, actor).user(id);
    store.set_user_disabled(id, disabled, now, &audit).await
}

/// Deletes a user for good. Sessions, consents and pending codes go with the account;
/// access tokens already issued stop working at `/userinfo` (the subject is gone) and
/// expire within their short lifetime elsewhere. The audit trail keeps its rows.
pub async fn delete(
    store: &dyn Store,
    throttle_keys: Option<&ThrottleKeys>,
    user: &User,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<bool, StoreError> {
    let audit = AuditEvent::new(now, AuditKind::UserDeleted, Outcome::Success, actor)
        .user(user.id)
        .detail("username", user.username.as_str());
    let key = throttle_keys.map(|k| k.of_user(&user.username));
    store.delete_user(user.id, key.as_deref(), &audit).await
}

/// The user's live sessions, most recently used first.
pub async fn sessions(
    store: &dyn Store,
    user: UserId,
    now: OffsetDateTime,
) -> Result<Vec<BrowserSession>, StoreError> {
    store.list_sessions(user, now).await
}

/// Ends one session of `user`; false when it was not live.
pub async fn revoke_session(
    store: &dyn Store,
    user: UserId,
    session: SessionId,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<bool, StoreError> {
    let audit = AuditEvent::new(now, AuditKind::SessionRevoked, Outcome::Success, actor)
        .user(user)
        .session(session)
        .detail("scope", "one");
    store
        .revoke_session(user, session, now, "admin_revoked", &audit)
        .await
}

/// Signs `user` out everywhere; returns how many sessions were live.
pub async fn revoke_all_sessions(
    store: &dyn Store,
    user: UserId,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<u64, StoreError> {
    let audit = AuditEvent::new(now, AuditKind::SessionRevoked, Outcome::Success, actor)
        .user(user)
        .detail("scope", "all");
    store
        .revoke_user_sessions(user, now, "admin_revoked", &audit)
        .await
}
