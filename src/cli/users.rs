//! `users …`: accounts, through `crate::users` like `/admin/v1/users`; `users mfa …`
//! (second factors) is in `users/mfa.rs`.

mod mfa;

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::prompt::read_new_password;
use super::{emit, list};
use crate::audit::Actor;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::throttle::ThrottleKeys;
use crate::domain::user::{User, Username, parse_email};
use crate::keys::{KeyError, MasterKey};
use crate::password::PasswordHasher;
use crate::storage::Store;
use crate::users::{self, NewAccount, ProfileChange, UserError};

pub use mfa::MfaCommand;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password is read from a prompt or stdin.
    Create {
        #[command(flatten)]
        user: UserArg,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Create the account without a password (it cannot sign in until one is set).
        #[arg(long)]
        no_password: bool,
    },
    /// Replace a user's password (read from a prompt or stdin) and sign out their sessions.
    SetPassword(UserArg),
    /// Disable a user: no sign-in, and every session ends.
    Disable(UserArg),
    /// Re-enable a disabled user.
    Enable(UserArg),
    /// Change a user's email address, its verification, or display name. A new address
    /// starts unverified unless --email-verified is given.
    Update {
        #[command(flatten)]
        user: UserArg,
        /// An empty value removes the address.
        #[arg(long)]
        email: Option<String>,
        /// An empty value removes the name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email_verified: Option<bool>,
    },
    /// Delete a user for good: sessions, consents and pending codes go too; the audit
    /// trail stays.
    Delete(UserArg),
    /// List users.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Manage a user's second factors: list, remove, reset, enroll-totp, recovery-codes.
    #[command(subcommand)]
    Mfa(MfaCommand),
}

// The account a command is about (no doc comment: it would replace the command's).
#[derive(Debug, Args)]
pub struct UserArg {
    #[arg(long)]
    pub username: String,
}

pub(super) async fn run(
    settings: &Settings,
    shared: &Arc<dyn Store>,
    cmd: UsersCommand,
    json: bool,
) -> anyhow::Result<()> {
    let store = shared.as_ref();
    match cmd {
        UsersCommand::Mfa(cmd) => mfa::run(settings, shared, cmd, json).await,
        UsersCommand::Create {
            user,
            email,
            name,
            no_password,
        } => {
            create(
                settings,
                store,
                user.username,
                email,
                name,
                no_password,
                json,
            )
            .await
        }
        UsersCommand::SetPassword(UserArg { username }) => {
            let user = find(store, &username).await?;
            let password = read_new_password(settings)?;
            let keys = throttle_keys(settings)?;
            users::set_password(
                store,
                &hasher(settings)?,
                keys.as_ref(),
                &user,
                password,
                SystemClock.now(),
                &Actor::cli(),
            )
            .await?;
            emit(
                json,
                &json!({ "username": user.username, "password_changed": true }),
                &format!(
                    "Password of {} changed; their sessions were signed out.",
                    user.username
                ),
            );
            Ok(())
        }
        UsersCommand::Disable(UserArg { username }) => {
            set_disabled(store, &username, true, json).await
        }
        UsersCommand::Enable(UserArg { username }) => {
            set_disabled(store, &username, false, json).await
        }
        UsersCommand::Update {
            user: UserArg { username },
            email,
            name,
            email_verified,
        } => {
            let user = find(store, &username).await?;
            let blank = |v: String| (!v.trim().is_empty()).then_some(v);
            let change = ProfileChange {
                email: email.map(blank),
                name: name.map(blank),
                email_verified,
            };
            let user =
                users::update_profile(store, user.id, change, SystemClock.now(), &Actor::cli())
                    .await?;
            emit(
                json,
                &serde_json::to_value(&user)?,
                &format!("Updated user {}.", user.username),
            );
            Ok(())
        }
        UsersCommand::Delete(UserArg { username }) => {
            let user = find(store, &username).await?;
            let keys = throttle_keys(settings)?;
            if !users::delete(
                store,
                keys.as_ref(),
                &user,
                SystemClock.now(),
                &Actor::cli(),
            )
            .await?
            {
                bail!("no user named {}", user.username);
            }
            emit(
                json,
                &json!({ "username": user.username, "deleted": true }),
                &format!("Deleted user {} and their sessions.", user.username),
            );
            Ok(())
        }
        UsersCommand::List { limit } => list(json, &store.list_users(limit).await?, |u| {
            format!(
                "{}  {:<24} {:<28} {}",
                u.id,
                u.username,
                u.email.as_deref().unwrap_or("-"),
                if u.disabled { "disabled" } else { "active" }
            )
        }),
    }
}

async fn create(
    settings: &Settings,
    store: &dyn Store,
    username: String,
    email: Option<String>,
    name: Option<String>,
    no_password: bool,
    json: bool,
) -> anyhow::Result<()> {
    // Refuse a bad name or address before prompting for a password.
    Username::parse(&username).context("invalid --username")?;
    if let Some(e) = &email {
        parse_email(e).context("invalid --email")?;
    }
    let password = if no_password {
        None
    } else {
        Some(read_new_password(settings)?)
    };
    let account = NewAccount {
        username,
        email,
        name,
        password,
    };
    let created = users::create(
        store,
        &hasher(settings)?,
        account,
        SystemClock.now(),
        &Actor::cli(),
    )
    .await;
    let user = match created {
        Err(UserError::Conflict(_)) => bail!("a user with this username already exists"),
        other => other?,
    };
    emit(
        json,
        &serde_json::to_value(&user)?,
        &format!("Created user {} ({}).", user.username, user.id),
    );
    Ok(())
}

async fn set_disabled(
    store: &dyn Store,
    username: &str,
    disabled: bool,
    json: bool,
) -> anyhow::Result<()> {
    let user = find(store, username).await?;
    let changed =
        users::set_disabled(store, user.id, disabled, SystemClock.now(), &Actor::cli()).await?;
    let state = if disabled { "disabled" } else { "enabled" };
    emit(
        json,
        &json!({ "username": user.username, "disabled": disabled, "changed": changed }),
        &if changed {
            format!("User {} is now {state}.", user.username)
        } else {
            format!("User {} was already {state}.", user.username)
        },
    );
    Ok(())
}

/// The user named on the command line (`users …`, `sessions …`, `audit list --user`).
pub(super) async fn find(store: &dyn Store, username: &str) -> anyhow::Result<User> {
    let name = Username::parse(username).context("invalid username")?;
    match users::find_by_name(store, name.as_str()).await {
        Err(UserError::NotFound) => bail!("no user named {name}"),
        other => Ok(other?),
    }
}

/// The keys of the lockout counters, from the master key the server uses. With no master
/// key at all a lockout cannot be found, so it is left to expire (`login.failure_window`).
fn throttle_keys(settings: &Settings) -> anyhow::Result<Option<ThrottleKeys>> {
    match MasterKey::load_existing(&settings.keys) {
        Ok(master) => Ok(Some(master.throttle_keys()?)),
        Err(KeyError::NoMasterKey(_)) => {
            eprintln!(
                "warning: no master key, so a lockout of this name is not lifted; it ends \
                 within login.failure_window"
            );
            Ok(None)
        }
        Err(e) => Err(e).context("loading the master key"),
    }
}

fn hasher(settings: &Settings) -> anyhow::Result<PasswordHasher> {
    Ok(PasswordHasher::new(&settings.password)?)
}
