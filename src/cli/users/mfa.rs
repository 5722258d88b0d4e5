//! `users mfa …`: a user's second factors, through `auth::Factors` like
//! `/admin/v1/users/{user_id}/factors`. Secrets and recovery codes are printed once.

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use super::{UserArg, find};
use crate::audit::Actor;
use crate::auth::{FactorError, FactorList, Factors, ProvisionedTotp};
use crate::cli::emit;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::http::pages::format_time;
use crate::keys::MasterKey;
use crate::storage::Store;

#[derive(Debug, Subcommand)]
pub enum MfaCommand {
    /// List a user's second factors and how many recovery codes are left.
    List(UserArg),
    /// Remove one second factor; the recovery codes go with the last one.
    Remove {
        #[command(flatten)]
        user: UserArg,
        /// The factor's id (from `users mfa list`).
        #[arg(long)]
        factor_id: Uuid,
    },
    /// Remove every second factor and recovery code of a user (a lost phone): they sign
    /// in with their password until they enroll again.
    Reset(UserArg),
    /// Enroll an authenticator app for a user (provisioning): confirmed at once. Prints
    /// the secret, its otpauth URI and, for a first factor, the recovery codes, once.
    EnrollTotp {
        #[command(flatten)]
        user: UserArg,
        /// The factor's name (default "Authenticator app").
        #[arg(long)]
        name: Option<String>,
    },
    /// Replace a user's recovery codes with a new set, printed once.
    RecoveryCodes(UserArg),
}

pub(super) async fn run(
    settings: &Settings,
    store: &Arc<dyn Store>,
    cmd: MfaCommand,
    json: bool,
) -> anyhow::Result<()> {
    let factors = factors(settings, store)?;
    let now = SystemClock.now();
    let actor = Actor::cli();
    match cmd {
        MfaCommand::List(UserArg { username }) => {
            let user = find(store.as_ref(), &username).await?;
            let list = factors.overview(user.id).await?;
            emit(
                json,
                &serde_json::to_value(&list)?,
                &list_text(user.username.as_str(), &list),
            );
        }
        MfaCommand::Remove {
            user: UserArg { username },
            factor_id,
        } => {
            let user = find(store.as_ref(), &username).await?;
            if !factors.remove(user.id, factor_id, now, &actor).await? {
                bail!("no such factor {factor_id} for user {}", user.username);
            }
            emit(
                json,
                &json!({ "username": user.username, "factor_id": factor_id, "removed": true }),
                &format!("Removed factor {factor_id} of {}.", user.username),
            );
        }
        MfaCommand::Reset(UserArg { username }) => {
            let user = find(store.as_ref(), &username).await?;
            let removed = factors.reset(user.id, now, &actor).await?;
            emit(
                json,
                &json!({ "username": user.username, "removed": removed }),
                &format!(
                    "Removed {removed} second factor(s) and every recovery code of {}.",
                    user.username
                ),
            );
        }
        MfaCommand::EnrollTotp {
            user: UserArg { username },
            name,
        } => {
            let user = find(store.as_ref(), &username).await?;
            let enrolled: ProvisionedTotp = factors
                .enroll_totp_for(&user, name.as_deref(), now, &actor)
                .await?
                .into();
            emit(
                json,
                &serde_json::to_value(&enrolled)?,
                &enrolled_text(user.username.as_str(), &enrolled),
            );
        }
        MfaCommand::RecoveryCodes(UserArg { username }) => {
            let user = find(store.as_ref(), &username).await?;
            let codes = match factors
                .regenerate_recovery_codes(user.id, now, &actor)
                .await
            {
                Err(FactorError::NoFactor) => bail!(
                    "{} has no second factor; enroll one first (users mfa enroll-totp)",
                    user.username
                ),
                other => other?,
            };
            emit(
                json,
                &json!({ "recovery_codes": codes }),
                &format!(
                    "New recovery codes of {} (shown once; the old ones no longer work):\n{}",
                    user.username,
                    indented(&codes)
                ),
            );
        }
    }
    Ok(())
}

/// The factors service over the command's database and the server's master key.
fn factors(settings: &Settings, store: &Arc<dyn Store>) -> anyhow::Result<Factors> {
    let master = MasterKey::load_existing(&settings.keys)
        .context("loading the master key (second-factor secrets are sealed under it)")?;
    Ok(Factors::new(Arc::clone(store), master, &settings.issuer))
}

fn list_text(username: &str, list: &FactorList) -> String {
    let mut lines: Vec<String> = list
        .factors
        .iter()
        .map(|f| {
            let last = f.last_used_at.map_or_else(
                || "never used".to_owned(),
                |t| format!("last used {}", format_time(t)),
            );
            format!(
                "{}  {:<6} {:<28} added {}, {last}",
                f.factor_id,
                f.kind,
                f.name,
                format_time(f.created_at)
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push(format!("{username} has no second factor."));
    }
    lines.push(format!(
        "Recovery codes left: {}",
        list.recovery_codes_remaining
    ));
    lines.join("\n")
}

fn enrolled_text(username: &str, e: &ProvisionedTotp) -> String {
    let mut text = format!(
        "Enrolled an authenticator app for {username} (factor {}).\n\
         Hand these over securely; they are not shown again.\n\
         Secret (base32): {}\n\
         otpauth URI: {}",
        e.factor_id, e.secret, e.otpauth_uri
    );
    match &e.recovery_codes {
        Some(codes) => {
            text.push_str("\nRecovery codes:\n");
            text.push_str(&indented(codes));
        }
        None => text.push_str("\nThe user's recovery codes are unchanged."),
    }
    text
}

fn indented(codes: &[String]) -> String {
    codes
        .iter()
        .map(|c| format!("  {c}"))
        .collect::<Vec<_>>()
        .join("\n")
}
