//! Registered clients, the CORS origins they allow, and the consents users gave them.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use crate::audit::AuditEvent;
use crate::domain::client::{Client, ClientId};
use crate::domain::scope::ScopeSet;
use crate::domain::secret::{TokenHash, kind};
use crate::domain::user::UserId;

/// Clients and consents.
#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn create_client(&self, client: &Client, audit: &AuditEvent) -> Result<(), StoreError>;
    async fn find_client(&self, id: &ClientId) -> Result<Option<Client>, StoreError>;
    async fn list_clients(&self, limit: u32) -> Result<Vec<Client>, StoreError>;
    /// Clients ordered by client_id, after `after` (a cursor), at most `limit`.
    async fn list_clients_after(
        &self,
        after: Option<&ClientId>,
        limit: u32,
    ) -> Result<Vec<Client>, StoreError>;
    /// Replaces the mutable fields of a client (not its kind, secret or creation time).
    async fn update_client(&self, client: &Client, audit: &AuditEvent) -> Result<bool, StoreError>;
    /// Suspends (`disabled`) or re-enables a client; true when its state changed (the
    /// audit row is written only then).
    async fn set_client_disabled(
        &self,
        id: &ClientId,
        disabled: bool,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    async fn delete_client(&self, id: &ClientId, audit: &AuditEvent) -> Result<bool, StoreError>;
    async fn set_client_secret(
        &self,
        id: &ClientId,
        hash: &TokenHash<kind::ClientSecret>,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Every CORS origin registered on some client, and whether a client receiving its
    /// refresh tokens in a cookie registered it (credentialed CORS on /token).
    async fn allowed_origins(&self) -> Result<Vec<(String, bool)>, StoreError>;
    async fn find_consent(
        &self,
        user: UserId,
        client: &ClientId,
    ) -> Result<Option<ScopeSet>, StoreError>;
}
