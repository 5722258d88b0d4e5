//! The SQL of `ClientStore`: clients, their CORS origins, consents.
macro_rules! sql_clients {
    ($store:ident, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::types::Json;

        use crate::audit::AuditEvent;
        use crate::domain::client::{
            AuthMethod, Client, ClientId, ClientKind, GrantTypes, TokenDelivery,
        };
        use crate::domain::redirect_uri::RedirectUri;
        use crate::domain::jws::SigningAlg;
        use crate::domain::scope::ScopeSet;
        use crate::domain::secret::{TokenHash, kind};
        use crate::domain::user::UserId;
        use crate::storage::{ClientStore, StoreError};

        const CLIENT_COLUMNS: &str = "client_id, name, kind, secret_hash, auth_method, \
             redirect_uris, post_logout_redirect_uris, allowed_origins, grant_types, scopes, \
             first_party, refresh_token_delivery, created_at, updated_at, \
             id_token_signed_response_alg, require_pkce, disabled, introspection, require_mfa";

        #[derive(sqlx::FromRow)]
        struct ClientRow {
            client_id: String,
            name: String,
            kind: String,
            secret_hash: Option<Vec<u8>>,
            auth_method: String,
            redirect_uris: Json<Vec<RedirectUri>>,
            post_logout_redirect_uris: Json<Vec<RedirectUri>>,
            allowed_origins: Json<Vec<String>>,
            grant_types: Json<GrantTypes>,
            scopes: Json<Vec<String>>,
            first_party: bool,
            refresh_token_delivery: String,
            created_at: Ts,
            updated_at: Ts,
            id_token_signed_response_alg: String,
            require_pkce: bool,
            disabled: bool,
            introspection: bool,
            require_mfa: bool,
        }

        impl ClientRow {
            fn into_client(self) -> Result<Client, StoreError> {
                Ok(Client {
                    id: ClientId::parse(&self.client_id).map_err(|_| corrupt("client_id"))?,
                    name: self.name,
                    kind: ClientKind::parse(&self.kind).ok_or_else(|| corrupt("client kind"))?,
                    auth_method: AuthMethod::parse(&self.auth_method)
                        .ok_or_else(|| corrupt("auth method"))?,
                    secret_hash: self.secret_hash.map(hash_of).transpose()?,
                    redirect_uris: self.redirect_uris.0,
                    post_logout_redirect_uris: self.post_logout_redirect_uris.0,
                    allowed_origins: self.allowed_origins.0,
                    grant_types: self.grant_types.0,
                    scopes: ScopeSet::from_tokens(self.scopes.0),
                    first_party: self.first_party,
                    refresh_token_delivery: TokenDelivery::parse(&self.refresh_token_delivery)
                        .ok_or_else(|| corrupt("refresh token delivery"))?,
                    created_at: from_ts(self.created_at),
                    updated_at: from_ts(self.updated_at),
                    id_token_signed_response_alg: SigningAlg::parse(
                        &self.id_token_signed_response_alg,
                    )
                    .ok_or_else(|| corrupt("id_token_signed_response_alg"))?,
                    require_pkce: self.require_pkce,
                    disabled: self.disabled,
                    introspection: self.introspection,
                    require_mfa: self.require_mfa,
                })
            }
        }

        #[async_trait]
        impl ClientStore for $store {
            async fn create_client(
                &self,
                c: &Client,
                audit: &AuditEvent,
            ) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(&format!(
                    "insert into clients ({CLIENT_COLUMNS}) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18, $19)"
                ))
                .bind(c.id.as_str())
                .bind(&c.name)
                .bind(c.kind.as_str())
                .bind(c.secret_hash.as_ref().map(|h| h.as_bytes().to_vec()))
                .bind(c.auth_method.as_str())
                .bind(Json(&c.redirect_uris))
                .bind(Json(&c.post_logout_redirect_uris))
                .bind(Json(&c.allowed_origins))
                .bind(Json(&c.grant_types))
                .bind(Json(c.scopes.to_vec()))
                .bind(c.first_party)
                .bind(c.refresh_token_delivery.as_str())
                .bind(ts(c.created_at))
                .bind(ts(c.updated_at))
                .bind(c.id_token_signed_response_alg.as_str())
                .bind(c.require_pkce)
                .bind(c.disabled)
                .bind(c.introspection)
                .bind(c.require_mfa)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, "a client with this client_id"))?;
                insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn find_client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
                let row: Option<ClientRow> = sqlx::query_as(&format!(
                    "select {CLIENT_COLUMNS} from clients where client_id = $1"
                ))
                .bind(id.as_str())
                .fetch_optional(self.reader())
                .await?;
                row.map(ClientRow::into_client).transpose()
            }

            async fn list_clients(&self, limit: u32) -> Result<Vec<Client>, StoreError> {
                let rows: Vec<ClientRow> = sqlx::query_as(&format!(
                    "select {CLIENT_COLUMNS} from clients order by client_id limit $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(ClientRow::into_client).collect()
            }

            async fn list_clients_after(
                &self,
                after: Option<&ClientId>,
                limit: u32,
            ) -> Result<Vec<Client>, StoreError> {
                let rows: Vec<ClientRow> = sqlx::query_as(&format!(
                    "select {CLIENT_COLUMNS} from clients \
                     where ($1 is null or client_id > $1) order by client_id limit $2"
                ))
                .bind(after.map(ClientId::as_str))
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(ClientRow::into_client).collect()
            }

            async fn update_client(
                &self,
                c: &Client,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                audited_change(
                    self.writer(),
                    sqlx::query(
                        "update clients set name = $2, auth_method = $3, redirect_uris = $4, \
                         post_logout_redirect_uris = $5, allowed_origins = $6, \
                         grant_types = $7, scopes = $8, first_party = $9, updated_at = $10, \
                         require_pkce = $11, introspection = $12, require_mfa = $13 \
                         where client_id = $1",
                    )
                    .bind(c.id.as_str())
                    .bind(&c.name)
                    .bind(c.auth_method.as_str())
                    .bind(Json(&c.redirect_uris))
                    .bind(Json(&c.post_logout_redirect_uris))
                    .bind(Json(&c.allowed_origins))
                    .bind(Json(&c.grant_types))
                    .bind(Json(c.scopes.to_vec()))
                    .bind(c.first_party)
                    .bind(ts(c.updated_at))
                    .bind(c.require_pkce)
                    .bind(c.introspection)
                    .bind(c.require_mfa),
                    audit,
                )
                .await
            }

            async fn set_client_disabled(
                &self,
                id: &ClientId,
                disabled: bool,
                now: OffsetDateTime,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                audited_change(
                    self.writer(),
                    sqlx::query(
                        "update clients set disabled = $2, updated_at = $3 \
                         where client_id = $1 and disabled <> $2",
                    )
                    .bind(id.as_str())
                    .bind(disabled)
                    .bind(ts(now)),
                    audit,
                )
                .await
            }

            async fn delete_client(
                &self,
                id: &ClientId,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                // The client's families go with it (on delete cascade); the access tokens
                // issued from them are denylisted first.
                revoke_families(
                    &mut *tx,
                    FamilyFilter::Client(id.as_str().to_owned()),
                    audit.at,
                    "client_deleted",
                )
                .await?;
                let deleted = sqlx::query("delete from clients where client_id = $1")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if deleted {
                    insert_audit(&mut *tx, audit).await?;
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(deleted)
            }

            async fn set_client_secret(
                &self,
                id: &ClientId,
                hash: &TokenHash<kind::ClientSecret>,
                now: OffsetDateTime,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                audited_change(
                    self.writer(),
                    sqlx::query(
                        "update clients set secret_hash = $2, updated_at = $3 \
                         where client_id = $1 and secret_hash is not null",
                    )
                    .bind(id.as_str())
                    .bind(hash.as_bytes())
                    .bind(ts(now)),
                    audit,
                )
                .await
            }

            async fn allowed_origins(&self) -> Result<Vec<(String, bool)>, StoreError> {
                let rows: Vec<(Json<Vec<String>>, String)> = sqlx::query_as(
                    "select allowed_origins, refresh_token_delivery from clients",
                )
                .fetch_all(self.reader())
                .await?;
                let mut all: std::collections::BTreeMap<String, bool> = Default::default();
                for (origins, delivery) in rows {
                    let cookie = delivery == TokenDelivery::Cookie.as_str();
                    for origin in origins.0 {
                        *all.entry(origin).or_default() |= cookie;
                    }
                }
                Ok(all.into_iter().collect())
            }

            async fn find_consent(
                &self,
                user: UserId,
                client: &ClientId,
            ) -> Result<Option<ScopeSet>, StoreError> {
                let scopes: Option<Json<Vec<String>>> = sqlx::query_scalar(
                    "select scopes from consents where user_id = $1 and client_id = $2",
                )
                .bind(user.0)
                .bind(client.as_str())
                .fetch_optional(self.reader())
                .await?;
                Ok(scopes.map(|j| ScopeSet::from_tokens(j.0)))
            }
        }

    };
}

pub(crate) use sql_clients;
