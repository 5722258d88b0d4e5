//! `audit list`: the audit trail, filtered like `/admin/v1/audit-events`.

use clap::Subcommand;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::list;
use super::users::find;
use crate::audit::AuditSearch;
use crate::http::pages::format_time;
use crate::storage::Store;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest audit events.
    List {
        #[arg(long)]
        kind: Option<String>,
        /// A username.
        #[arg(long)]
        user: Option<String>,
        /// Events concerning this client.
        #[arg(long)]
        client: Option<String>,
        /// Events made by this admin API client.
        #[arg(long)]
        actor_client: Option<String>,
        /// RFC 3339, e.g. 2026-01-31T00:00:00Z (inclusive).
        #[arg(long, value_parser = parse_time)]
        since: Option<OffsetDateTime>,
        /// RFC 3339 (exclusive).
        #[arg(long, value_parser = parse_time)]
        until: Option<OffsetDateTime>,
        /// Only events older than this id (paging).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| "expected an RFC 3339 time such as 2026-01-31T00:00:00Z".to_owned())
}

pub(super) async fn run(store: &dyn Store, cmd: AuditCommand, json: bool) -> anyhow::Result<()> {
    let AuditCommand::List {
        kind,
        user,
        client,
        actor_client,
        since,
        until,
        before,
        limit,
    } = cmd;
    let user_id = match user {
        Some(u) => Some(find(store, &u).await?.id),
        None => None,
    };
    let rows = store
        .search_audit(&AuditSearch {
            kind,
            user_id,
            client_id: client,
            actor_client_id: actor_client,
            since,
            until,
            before,
            limit: limit.clamp(1, 1000),
        })
        .await?;
    list(json, &rows, |r| {
        format!(
            "{:>6} {}  {:<22} {:<8} user={} client={} by={} ip={} {}",
            r.id,
            format_time(r.at),
            r.kind,
            r.outcome,
            r.user_id
                .map(|u| u.to_string())
                .unwrap_or_else(|| "-".into()),
            r.client_id.as_deref().unwrap_or("-"),
            r.actor_client_id
                .as_deref()
                .or(r.request_id.as_deref().filter(|id| *id == "cli"))
                .unwrap_or("-"),
            r.ip.as_deref().unwrap_or("-"),
            r.details
        )
    })
}
