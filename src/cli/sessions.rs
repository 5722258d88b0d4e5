//! `sessions …`: a user's browser sessions, through `crate::users` like
//! `/admin/v1/users/{user_id}/sessions`.

use anyhow::bail;
use clap::Subcommand;
use serde_json::json;

use super::users::find;
use super::{emit, list};
use crate::audit::Actor;
use crate::clock::{Clock, SystemClock};
use crate::domain::session::SessionId;
use crate::http::pages::format_time;
use crate::storage::Store;
use crate::users;

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// A user's live sessions, most recently used first.
    List {
        #[arg(long)]
        user: String,
    },
    /// Sign a user out everywhere, or of one session.
    Revoke {
        #[arg(long)]
        user: String,
        /// Only this session (an id from `sessions list`).
        #[arg(long)]
        session: Option<uuid::Uuid>,
    },
}

pub(super) async fn run(store: &dyn Store, cmd: SessionsCommand, json: bool) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let actor = Actor::cli();
    match cmd {
        SessionsCommand::List { user } => {
            let user = find(store, &user).await?;
            let sessions = users::sessions(store, user.id, now).await?;
            list(json, &sessions, |s| {
                format!(
                    "{}  signed in {}  last seen {}  ip={} {}",
                    s.id,
                    format_time(s.auth_time),
                    format_time(s.last_seen_at),
                    s.ip.as_deref().unwrap_or("-"),
                    s.user_agent.as_deref().unwrap_or("-"),
                )
            })?;
        }
        SessionsCommand::Revoke {
            user,
            session: Some(session),
        } => {
            let user = find(store, &user).await?;
            let session = SessionId(session);
            if !users::revoke_session(store, user.id, session, now, &actor).await? {
                bail!("{} has no live session {session}", user.username);
            }
            emit(
                json,
                &json!({ "username": user.username, "revoked_sessions": 1 }),
                &format!("Revoked session {session} of {}.", user.username),
            );
        }
        SessionsCommand::Revoke {
            user,
            session: None,
        } => {
            let user = find(store, &user).await?;
            let n = users::revoke_all_sessions(store, user.id, now, &actor).await?;
            emit(
                json,
                &json!({ "username": user.username, "revoked_sessions": n }),
                &format!("Revoked {n} session(s) of {}.", user.username),
            );
        }
    }
    Ok(())
}
