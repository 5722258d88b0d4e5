//! `/admin/v1/audit-events`: the audit trail, filtered and paged (newest first).

use actix_web::{HttpRequest, get, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::ApiError;
use super::{PageParams, query};
use crate::app::AppState;
use crate::audit::{AuditRecord, AuditSearch};
use crate::domain::user::UserId;

/// One audit row.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[schema(example = "client.created")]
    pub kind: String,
    /// `success` or `failure`.
    pub outcome: String,
    pub user_id: Option<Uuid>,
    /// The client the event concerns.
    pub client_id: Option<String>,
    /// The admin client that acted, for changes made through this API.
    pub actor_client_id: Option<String>,
    pub session_id: Option<Uuid>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// Event-specific facts; never a credential.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<AuditRecord> for AuditEventView {
    fn from(r: AuditRecord) -> Self {
        Self {
            id: r.id,
            at: r.at,
            kind: r.kind,
            outcome: r.outcome,
            user_id: r.user_id.map(|u| u.0),
            client_id: r.client_id,
            actor_client_id: r.actor_client_id,
            session_id: r.session_id.map(|s| s.0),
            ip: r.ip,
            request_id: r.request_id,
            details: r.details,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEventView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// e.g. `login.failure`, `client.created`, `token.issued`.
    pub kind: Option<String>,
    pub user_id: Option<Uuid>,
    /// Events concerning this client.
    pub client_id: Option<String>,
    /// Events made by this admin client.
    pub actor_client_id: Option<String>,
    /// RFC 3339; events at or after.
    pub since: Option<String>,
    /// RFC 3339; events before.
    pub until: Option<String>,
    /// The `next_before` of the previous page.
    pub before: Option<i64>,
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
}

fn instant(name: &str, raw: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    raw.map(|s| {
        OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            ApiError::BadRequest(format!(
                "{name} must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"
            ))
        })
    })
    .transpose()
}

/// Audit events matching every filter given, newest first.
#[utoipa::path(
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, description = "Bad query parameters"),
    )
)]
#[get("/audit-events")]
pub async fn list_audit_events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<web::Json<AuditPage>, ApiError> {
    let p: AuditParams = query(&req)?;
    let limit = PageParams::limit(p.limit)?;
    let search = AuditSearch {
        kind: p.kind,
        user_id: p.user_id.map(UserId),
        client_id: p.client_id,
        actor_client_id: p.actor_client_id,
        since: instant("since", p.since.as_deref())?,
        until: instant("until", p.until.as_deref())?,
        before: p.before,
        limit: limit + 1,
    };
    let mut items = state.provider.store.search_audit(&search).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_before = more.then(|| items.last().map(|r| r.id)).flatten();
    Ok(web::Json(AuditPage {
        items: items.into_iter().map(AuditEventView::from).collect(),
        next_before,
    }))
}
