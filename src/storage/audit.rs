//! The audit log: decisions that change nothing else, and searches over it.

use async_trait::async_trait;

use super::StoreError;
use crate::audit::{AuditEvent, AuditQuery, AuditRecord, AuditSearch};

/// The `audit_events` table (most rows are written with the change they record).
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// For decisions that change nothing else (a refused or failed attempt), in one
    /// transaction.
    async fn record_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// The audit rows matching every filter, newest first, at most `limit` (1..=1000).
    async fn search_audit(&self, search: &AuditSearch) -> Result<Vec<AuditRecord>, StoreError>;
}
