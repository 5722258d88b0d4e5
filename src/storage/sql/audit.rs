//! The SQL of `AuditStore`.
macro_rules! sql_audit {
    ($store:ident, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::audit::{AuditEvent, AuditQuery, AuditRecord, AuditSearch};
        use crate::domain::session::SessionId;
        use crate::domain::user::UserId;
        use crate::storage::{AuditStore, StoreError};

        #[derive(sqlx::FromRow)]
        struct AuditRow {
            audit_event_id: i64,
            at: Ts,
            kind: String,
            outcome: String,
            user_id: Option<Uuid>,
            client_id: Option<String>,
            session_id: Option<Uuid>,
            ip: Option<String>,
            request_id: Option<String>,
            details: Json<serde_json::Value>,
            actor_client_id: Option<String>,
        }

        const AUDIT_COLUMNS: &str = "audit_event_id, at, kind, outcome, user_id, client_id, \
             session_id, ip, request_id, details, actor_client_id";

        impl From<AuditRow> for AuditRecord {
            fn from(r: AuditRow) -> Self {
                AuditRecord {
                    id: r.audit_event_id,
                    at: from_ts(r.at),
                    kind: r.kind,
                    outcome: r.outcome,
                    user_id: r.user_id.map(UserId),
                    client_id: r.client_id,
                    session_id: r.session_id.map(SessionId),
                    ip: r.ip,
                    request_id: r.request_id,
                    actor_client_id: r.actor_client_id,
                    details: r.details.0,
                }
            }
        }

        #[async_trait]
        impl AuditStore for $store {
            async fn record_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await?;
                for event in events {
                    insert_audit(&mut *tx, event).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
                let rows: Vec<AuditRow> = sqlx::query_as(&format!(
                    "select {AUDIT_COLUMNS} from audit_events \
                     where ($1 is null or kind = $1) and ($2 is null or user_id = $2) \
                     order by audit_event_id desc limit $3"
                ))
                .bind(q.kind.as_deref())
                .bind(q.user_id.map(|u| u.0))
                .bind(i64::from(q.limit.max(1)))
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(AuditRecord::from).collect())
            }

            async fn search_audit(&self, q: &AuditSearch) -> Result<Vec<AuditRecord>, StoreError> {
                let rows: Vec<AuditRow> = sqlx::query_as(&format!(
                    "select {AUDIT_COLUMNS} from audit_events \
                     where ($1 is null or kind = $1) and ($2 is null or user_id = $2) \
                     and ($3 is null or client_id = $3) \
                     and ($4 is null or actor_client_id = $4) \
                     and ($5 is null or at >= $5) and ($6 is null or at < $6) \
                     and ($7 is null or audit_event_id < $7) \
                     order by audit_event_id desc limit $8"
                ))
                .bind(q.kind.as_deref())
                .bind(q.user_id.map(|u| u.0))
                .bind(q.client_id.as_deref())
                .bind(q.actor_client_id.as_deref())
                .bind(q.since.map(ts))
                .bind(q.until.map(ts))
                .bind(q.before)
                .bind(i64::from(q.limit.clamp(1, 1000)))
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(AuditRecord::from).collect())
            }
        }
    };
}

pub(crate) use sql_audit;
