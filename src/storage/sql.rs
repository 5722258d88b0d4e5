//! The SQL shared by both backends. The statements are written once, in the dialect
//! Postgres and SQLite have in common (`$n` parameters, `returning`, `on conflict`), and
//! instantiated per backend; each backend module supplies `Ts` (its timestamp column
//! type), `ts`/`from_ts` conversions, and `reader()`/`writer()` pools.
//!
//! Single-use artifacts are consumed with one conditional `update … returning`, never
//! read-then-write, so two concurrent uses cannot both win.

macro_rules! sql_store {
    ($store:ident, $db:ty, $backend:expr) => {
        use async_trait::async_trait;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::audit::{AuditEvent, AuditQuery, AuditRecord, AuditSearch};
        use crate::domain::secret::TokenHash;
        use crate::domain::session::{BrowserSession, SessionId};
        use crate::domain::throttle::{LeaseId, ThrottlePolicy, ThrottleState};
        use crate::domain::user::{NewUser, PasswordHash, User, UserId, UserProfile, Username};
        use crate::domain::client::{AuthMethod, Client, ClientId, ClientKind};
        use crate::domain::client::{GrantTypes, TokenDelivery};
        use crate::domain::redirect_uri::RedirectUri;
        use crate::domain::jws::SigningAlg;
        use crate::domain::scope::ScopeSet;
        use crate::domain::refresh::FamilyId;
        use crate::domain::claims::RequestedClaims;
        use crate::storage::{
            AuthorizationCodeRecord, CodeRedemption, CompletedLogin, IssueCode,
            KeyRetirement, LoginTransaction, PasswordChange, PurgeCutoffs, Redemption,
            ReencryptedKey, RefreshRotation, RefreshTokenRecord, Reservation, Retired,
            SigningKeyRecord, Store,
        };

        const USER_COLUMNS: &str = "user_id, username, email, email_verified, name, \
             password_hash, disabled, created_at, updated_at";
        const SESSION_COLUMNS: &str = "session_id, user_id, auth_time, amr, created_at, \
             last_seen_at, idle_expires_at, absolute_expires_at, ip, user_agent";

        #[derive(sqlx::FromRow)]
        struct UserRow {
            user_id: Uuid,
            username: String,
            email: Option<String>,
            email_verified: bool,
            name: Option<String>,
            password_hash: Option<String>,
            disabled: bool,
            created_at: Ts,
            updated_at: Ts,
        }

        impl UserRow {
            fn into_parts(self) -> (User, Option<PasswordHash>) {
                let user = User {
                    id: UserId(self.user_id),
                    username: Username::from_trusted(self.username),
                    email: self.email,
                    email_verified: self.email_verified,
                    name: self.name,
                    disabled: self.disabled,
                    created_at: from_ts(self.created_at),
                    updated_at: from_ts(self.updated_at),
                };
                (user, self.password_hash.map(PasswordHash))
            }
        }

        #[derive(sqlx::FromRow)]
        struct SessionRow {
            session_id: Uuid,
            user_id: Uuid,
            auth_time: Ts,
            amr: Json<Vec<String>>,
            created_at: Ts,
            last_seen_at: Ts,
            idle_expires_at: Ts,
            absolute_expires_at: Ts,
            ip: Option<String>,
            user_agent: Option<String>,
        }

        impl From<SessionRow> for BrowserSession {
            fn from(r: SessionRow) -> Self {
                BrowserSession {
                    id: SessionId(r.session_id),
                    user_id: UserId(r.user_id),
                    auth_time: from_ts(r.auth_time),
                    amr: r.amr.0,
                    created_at: from_ts(r.created_at),
                    last_seen_at: from_ts(r.last_seen_at),
                    idle_expires_at: from_ts(r.idle_expires_at),
                    absolute_expires_at: from_ts(r.absolute_expires_at),
                    ip: r.ip,
                    user_agent: r.user_agent,
                }
            }
        }

        #[derive(sqlx::FromRow)]
        struct LoginTransactionRow {
            id_hash: Vec<u8>,
            binding_hash: Vec<u8>,
            return_to: String,
            request: Option<Json<serde_json::Value>>,
            created_at: Ts,
            expires_at: Ts,
            session_id: Option<Uuid>,
        }

        const TRANSACTION_COLUMNS: &str =
            "id_hash, binding_hash, return_to, request, created_at, expires_at, session_id";

        impl LoginTransactionRow {
            fn into_record(self) -> Result<LoginTransaction, StoreError> {
                Ok(LoginTransaction {
                    id_hash: hash_of(self.id_hash)?,
                    binding_hash: hash_of(self.binding_hash)?,
                    return_to: self.return_to,
                    request: self.request.map(|j| j.0),
                    created_at: from_ts(self.created_at),
                    expires_at: from_ts(self.expires_at),
                    session_id: self.session_id.map(SessionId),
                })
            }
        }

        const CLIENT_COLUMNS: &str = "client_id, name, kind, secret_hash, auth_method, \
             redirect_uris, post_logout_redirect_uris, allowed_origins, grant_types, scopes, \
             first_party, refresh_token_delivery, created_at, updated_at, \
             id_token_signed_response_alg, require_pkce, disabled, introspection";

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
        }

        fn corrupt(what: &str) -> StoreError {
            StoreError::Database(sqlx::Error::Decode(format!("stored {what} is invalid").into()))
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
                })
            }
        }

        const CODE_COLUMNS: &str = "code_hash, client_id, user_id, session_id, redirect_uri, \
             scope, nonce, code_challenge, auth_time, amr, claims, created_at, expires_at";

        #[derive(sqlx::FromRow)]
        struct CodeRow {
            code_hash: Vec<u8>,
            client_id: String,
            user_id: Uuid,
            session_id: Uuid,
            redirect_uri: String,
            scope: String,
            nonce: Option<String>,
            code_challenge: String,
            auth_time: Ts,
            amr: Json<Vec<String>>,
            claims: Option<Json<RequestedClaims>>,
            created_at: Ts,
            expires_at: Ts,
        }

        impl CodeRow {
            fn into_record(self) -> Result<AuthorizationCodeRecord, StoreError> {
                Ok(AuthorizationCodeRecord {
                    code_hash: hash_of(self.code_hash)?,
                    client_id: ClientId::parse(&self.client_id).map_err(|_| corrupt("client_id"))?,
                    user_id: UserId(self.user_id),
                    session_id: SessionId(self.session_id),
                    redirect_uri: self.redirect_uri,
                    scope: ScopeSet::parse(&self.scope).map_err(|_| corrupt("scope"))?,
                    nonce: self.nonce,
                    code_challenge: self.code_challenge,
                    auth_time: from_ts(self.auth_time),
                    amr: self.amr.0,
                    claims: self.claims.map(|c| c.0).unwrap_or_default(),
                    created_at: from_ts(self.created_at),
                    expires_at: from_ts(self.expires_at),
                })
            }
        }

        #[derive(sqlx::FromRow)]
        struct SigningKeyRow {
            kid: String,
            alg: String,
            state: String,
            encrypted_private_key: Vec<u8>,
            public_jwk: Json<serde_json::Value>,
            created_at: Ts,
            activated_at: Option<Ts>,
            retired_at: Option<Ts>,
            remove_after: Option<Ts>,
        }

        #[derive(sqlx::FromRow)]
        struct RefreshRow {
            token_hash: Vec<u8>,
            family_id: Uuid,
            client_id: String,
            user_id: Uuid,
            session_id: Option<Uuid>,
            scope: String,
            auth_time: Ts,
            amr: Json<Vec<String>>,
            claims: Option<Json<RequestedClaims>>,
            issued_at: Ts,
            idle_expires_at: Ts,
            absolute_expires_at: Ts,
            rotated_at: Option<Ts>,
            family_revoked_at: Option<Ts>,
            successor_response: Option<Vec<u8>>,
            successor_until: Option<Ts>,
            session_revoked_at: Option<Ts>,
            session_idle_expires_at: Option<Ts>,
            session_absolute_expires_at: Option<Ts>,
            disabled: bool,
        }

        impl RefreshRow {
            fn into_record(self, now: time::OffsetDateTime) -> Result<RefreshTokenRecord, StoreError> {
                let session_live = self.session_id.is_some()
                    && self.session_revoked_at.is_none()
                    && self.session_idle_expires_at.map(from_ts).is_some_and(|t| t > now)
                    && self.session_absolute_expires_at.map(from_ts).is_some_and(|t| t > now);
                Ok(RefreshTokenRecord {
                    token_hash: hash_of(self.token_hash)?,
                    family_id: FamilyId(self.family_id),
                    client_id: ClientId::parse(&self.client_id).map_err(|_| corrupt("client_id"))?,
                    user_id: UserId(self.user_id),
                    session_id: self.session_id.map(SessionId),
                    scope: ScopeSet::parse(&self.scope).map_err(|_| corrupt("scope"))?,
                    auth_time: from_ts(self.auth_time),
                    amr: self.amr.0,
                    claims: self.claims.map(|c| c.0).unwrap_or_default(),
                    issued_at: from_ts(self.issued_at),
                    idle_expires_at: from_ts(self.idle_expires_at),
                    absolute_expires_at: from_ts(self.absolute_expires_at),
                    rotated_at: self.rotated_at.map(from_ts),
                    family_revoked: self.family_revoked_at.is_some(),
                    successor_response: self.successor_response,
                    successor_until: self.successor_until.map(from_ts),
                    session_live,
                    session_idle_expires_at: self.session_idle_expires_at.map(from_ts),
                    session_absolute_expires_at: self.session_absolute_expires_at.map(from_ts),
                    user_disabled: self.disabled,
                })
            }
        }

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

        fn hash_of(bytes: Vec<u8>) -> Result<TokenHash, StoreError> {
            TokenHash::from_slice(&bytes).ok_or_else(|| {
                StoreError::Database(sqlx::Error::Decode("a stored hash is not 32 bytes".into()))
            })
        }

        async fn insert_audit<'c, E>(executor: E, event: &AuditEvent) -> Result<(), StoreError>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            sqlx::query(
                "insert into audit_events (at, kind, outcome, user_id, client_id, session_id, \
                 ip, request_id, details, actor_client_id) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(ts(event.at))
            .bind(event.kind.as_str())
            .bind(event.outcome.as_str())
            .bind(event.user_id.map(|u| u.0))
            .bind(event.client_id.as_deref())
            .bind(event.session_id.map(|s| s.0))
            .bind(event.ip.as_deref())
            .bind(event.request_id.as_deref())
            .bind(Json(&event.details))
            .bind(event.actor_client_id.as_deref())
            .execute(executor)
            .await?;
            Ok(())
        }

        /// Runs `statement` and, when it changed exactly one row, writes `audit`: the
        /// decision and its audit row in one transaction.
        async fn audited_change<'q>(
            pool: &sqlx::Pool<$db>,
            statement: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            audit: &AuditEvent,
        ) -> Result<bool, StoreError> {
            let mut tx = pool.begin().await?;
            let changed = statement.execute(&mut *tx).await?.rows_affected() == 1;
            if changed {
                insert_audit(&mut *tx, audit).await?;
            }
            tx.commit().await?;
            Ok(changed)
        }

        /// Inserts a key as `current` (a conflict is an error: the algorithm has one) or as
        /// `next` (skipped when the algorithm already has one); true when inserted.
        async fn insert_key<'c, E>(
            executor: E,
            k: &SigningKeyRecord,
            state: &str,
            activated_at: Option<time::OffsetDateTime>,
        ) -> Result<bool, StoreError>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let skip = if state == "next" { " on conflict do nothing" } else { "" };
            Ok(sqlx::query(&format!(
                "insert into signing_keys (kid, alg, state, encrypted_private_key, \
                 public_jwk, created_at, activated_at, retired_at, remove_after) \
                 values ($1, $2, $3, $4, $5, $6, $7, null, null){skip}"
            ))
            .bind(&k.kid)
            .bind(&k.alg)
            .bind(state)
            .bind(&k.encrypted_private_key)
            .bind(Json(&k.public_jwk))
            .bind(ts(k.created_at))
            .bind(activated_at.map(ts))
            .execute(executor)
            .await
            .map_err(|e| conflict_or(e, "a current key for this algorithm"))?
            .rows_affected()
                == 1)
        }

        /// Tells the other instances that `signing_keys` changed (Postgres NOTIFY, delivered
        /// when the transaction commits; nothing on SQLite). Best effort, inside a
        /// savepoint: an engine without NOTIFY, or a full notification queue, must not undo
        /// the key change; the interval reload is the fallback.
        async fn notify_keys_changed(
            tx: &mut sqlx::Transaction<'_, $db>,
            change: &str,
        ) -> Result<(), StoreError> {
            let Some(statement) = NOTIFY_KEYS else {
                return Ok(());
            };
            sqlx::query("savepoint notify_keys").execute(&mut **tx).await?;
            match sqlx::query(statement).bind(change).execute(&mut **tx).await {
                Ok(_) => {
                    sqlx::query("release savepoint notify_keys")
                        .execute(&mut **tx)
                        .await?;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not notify other instances of a key change");
                    sqlx::query("rollback to savepoint notify_keys")
                        .execute(&mut **tx)
                        .await?;
                }
            }
            Ok(())
        }

        fn conflict_or(e: sqlx::Error, what: &'static str) -> StoreError {
            match e.as_database_error() {
                Some(db) if db.is_unique_violation() => StoreError::Conflict(what),
                _ => StoreError::Database(e),
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            async fn migrate(&self) -> Result<(), StoreError> {
                self.run_migrations().await
            }

            fn pool_stats(&self) -> crate::storage::PoolStats {
                let (reader, writer) = (self.reader(), self.writer());
                let mut stats = crate::storage::PoolStats {
                    open: reader.size(),
                    idle: u32::try_from(reader.num_idle()).unwrap_or(u32::MAX),
                };
                // Postgres uses one pool for both.
                if !std::ptr::eq(reader, writer) {
                    stats.open += writer.size();
                    stats.idle += u32::try_from(writer.num_idle()).unwrap_or(u32::MAX);
                }
                stats
            }

            async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
                self.pending_migration_versions().await
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("select 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn close(&self) {
                self.close_pools().await;
            }

            async fn create_user(
                &self,
                user: &NewUser,
                now: OffsetDateTime,
                audit: &AuditEvent,
            ) -> Result<User, StoreError> {
                let id = UserId::new();
                let mut tx = self.writer().begin().await?;
                let row: UserRow = sqlx::query_as(&format!(
                    "insert into users (user_id, username, email, email_verified, name, \
                     password_hash, disabled, created_at, updated_at) \
                     values ($1, $2, $3, false, $4, $5, false, $6, $6) returning {USER_COLUMNS}"
                ))
                .bind(id.0)
                .bind(user.username.as_str())
                .bind(user.email.as_deref())
                .bind(user.name.as_deref())
                .bind(user.password_hash.as_ref().map(|h| h.0.as_str()))
                .bind(ts(now))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, "a user with this username"))?;
                let audit = audit.clone().user(id);
                insert_audit(&mut *tx, &audit).await?;
                tx.commit().await?;
                Ok(row.into_parts().0)
            }

            async fn find_user(
                &self,
                username: &Username,
            ) -> Result<Option<(User, Option<PasswordHash>)>, StoreError> {
                let row: Option<UserRow> = sqlx::query_as(&format!(
                    "select {USER_COLUMNS} from users where username = $1"
                ))
                .bind(username.as_str())
                .fetch_optional(self.reader())
                .await?;
                Ok(row.map(UserRow::into_parts))
            }

            async fn find_user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
                let row: Option<UserRow> = sqlx::query_as(&format!(
                    "select {USER_COLUMNS} from users where user_id = $1"
                ))
                .bind(id.0)
                .fetch_optional(self.reader())
                .await?;
                Ok(row.map(|r| r.into_parts().0))
            }

            async fn list_users(&self, limit: u32) -> Result<Vec<User>, StoreError> {
                let rows: Vec<UserRow> = sqlx::query_as(&format!(
                    "select {USER_COLUMNS} from users order by username limit $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(|r| r.into_parts().0).collect())
            }

            async fn set_password_hash(
                &self,
                id: UserId,
                hash: &PasswordHash,
                now: OffsetDateTime,
                change: PasswordChange<'_>,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                let previous = match change {
                    PasswordChange::Rehash { previous } => Some(previous.0.as_str()),
                    PasswordChange::Reset { .. } => None,
                };
                // A rehash is a compare-and-swap, so it can never undo a reset.
                let changed = sqlx::query(
                    "update users set password_hash = $2, updated_at = $3 \
                     where user_id = $1 and ($4 is null or password_hash = $4)",
                )
                .bind(id.0)
                .bind(hash.0.as_str())
                .bind(ts(now))
                .bind(previous)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if changed {
                    if let PasswordChange::Reset { throttle_key, audit } = change {
                        revoke_all(&mut *tx, id, now, "password_changed").await?;
                        sqlx::query("delete from login_throttles where throttle_key = $1")
                            .bind(throttle_key)
                            .execute(&mut *tx)
                            .await?;
                        insert_audit(&mut *tx, audit).await?;
                    }
                }
                tx.commit().await?;
                Ok(changed)
            }

            async fn set_user_disabled(
                &self,
                id: UserId,
                disabled: bool,
                now: OffsetDateTime,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                let changed = sqlx::query(
                    "update users set disabled = $2, updated_at = $3 \
                     where user_id = $1 and disabled <> $2",
                )
                .bind(id.0)
                .bind(disabled)
                .bind(ts(now))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if changed {
                    if disabled {
                        revoke_all(&mut *tx, id, now, "user_disabled").await?;
                    }
                    insert_audit(&mut *tx, audit).await?;
                }
                tx.commit().await?;
                Ok(changed)
            }

            async fn insert_login_transaction(
                &self,
                t: &LoginTransaction,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "insert into login_transactions \
                     (id_hash, binding_hash, return_to, request, created_at, expires_at) \
                     values ($1, $2, $3, $4, $5, $6)",
                )
                .bind(t.id_hash.as_bytes())
                .bind(t.binding_hash.as_bytes())
                .bind(t.return_to.as_str())
                .bind(t.request.as_ref().map(Json))
                .bind(ts(t.created_at))
                .bind(ts(t.expires_at))
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn find_login_transaction(
                &self,
                id_hash: &TokenHash,
                now: OffsetDateTime,
            ) -> Result<Option<LoginTransaction>, StoreError> {
                let row: Option<LoginTransactionRow> = sqlx::query_as(&format!(
                    "select {TRANSACTION_COLUMNS} from login_transactions \
                     where id_hash = $1 and consumed_at is null and expires_at > $2"
                ))
                .bind(id_hash.as_bytes())
                .bind(ts(now))
                .fetch_optional(self.reader())
                .await?;
                row.map(LoginTransactionRow::into_record).transpose()
            }

            async fn find_pending_authorization(
                &self,
                id_hash: &TokenHash,
                now: OffsetDateTime,
            ) -> Result<Option<LoginTransaction>, StoreError> {
                let row: Option<LoginTransactionRow> = sqlx::query_as(&format!(
                    "select {TRANSACTION_COLUMNS} from login_transactions \
                     where id_hash = $1 and request is not null and completed_at is null \
                     and expires_at > $2"
                ))
                .bind(id_hash.as_bytes())
                .bind(ts(now))
                .fetch_optional(self.reader())
                .await?;
                row.map(LoginTransactionRow::into_record).transpose()
            }

            async fn reserve_login_attempt(
                &self,
                key: &str,
                now: OffsetDateTime,
                lease: time::Duration,
                policy: &ThrottlePolicy,
            ) -> Result<Reservation, StoreError> {
                let mut tx = self.writer().begin().await?;
                // SECURITY: the upsert holds the key's row until commit (Postgres row lock;
                // SQLite has one writer), so concurrent reservations of one key are decided
                // one after another and never all see room. Failures count only while the
                // last failure or the end of its lock lies inside the window ($3).
                let (failures, locked_until): (i32, Option<Ts>) = sqlx::query_as(
                    "insert into login_throttles \
                     (throttle_key, failures, last_failure_at, locked_until) \
                     values ($1, 0, $2, null) \
                     on conflict (throttle_key) do update set \
                     failures = case when login_throttles.last_failure_at < $3 \
                                      and (login_throttles.locked_until is null \
                                           or login_throttles.locked_until < $3) \
                                     then 0 else login_throttles.failures end \
                     returning failures, locked_until",
                )
                .bind(key)
                .bind(ts(now))
                .bind(ts(policy.window_start(now)))
                .fetch_one(&mut *tx)
                .await?;
                if let Some(until) = locked_until.map(from_ts).filter(|u| *u > now) {
                    tx.commit().await?;
                    return Ok(Reservation::Locked { until });
                }
                let leases: i64 = sqlx::query_scalar(
                    "select count(*) from login_attempt_leases \
                     where throttle_key = $1 and expires_at > $2",
                )
                .bind(key)
                .bind(ts(now))
                .fetch_one(&mut *tx)
                .await?;
                // Room: failures + leases < max, or no lease at all once the lock has run
                // out (one attempt per lock period, so the lock keeps doubling).
                let failures = i64::from(failures);
                let room = leases == 0 || failures + leases < i64::from(policy.max_failures);
                if !room {
                    tx.commit().await?;
                    return Ok(Reservation::Busy);
                }
                let id = LeaseId::new();
                sqlx::query(
                    "insert into login_attempt_leases (lease_id, throttle_key, expires_at) \
                     values ($1, $2, $3)",
                )
                .bind(id.0)
                .bind(key)
                .bind(ts(now + lease))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Reservation::Granted(id))
            }

            async fn record_login_failure(
                &self,
                key: &str,
                lease: LeaseId,
                now: OffsetDateTime,
                policy: &ThrottlePolicy,
            ) -> Result<ThrottleState, StoreError> {
                let mut tx = self.writer().begin().await?;
                sqlx::query("delete from login_attempt_leases where lease_id = $1")
                    .bind(lease.0)
                    .execute(&mut *tx)
                    .await?;
                // The count restarts only when both the last failure and the end of any
                // lock lie before the window, so lockouts keep doubling up to the cap.
                let failures: i32 = sqlx::query_scalar(
                    "insert into login_throttles \
                     (throttle_key, failures, last_failure_at, locked_until) \
                     values ($1, 1, $2, null) \
                     on conflict (throttle_key) do update set \
                     failures = case when login_throttles.last_failure_at < $3 \
                                      and (login_throttles.locked_until is null \
                                           or login_throttles.locked_until < $3) \
                                     then 1 else login_throttles.failures + 1 end, \
                     last_failure_at = $2 \
                     returning failures",
                )
                .bind(key)
                .bind(ts(now))
                .bind(ts(policy.window_start(now)))
                .fetch_one(&mut *tx)
                .await?;
                let failures = u32::try_from(failures).unwrap_or(0);
                let locked_until = policy.lockout_after(failures).map(|d| now + d);
                if let Some(until) = locked_until {
                    // Only ever lengthens: a concurrent failure may have set a longer lock.
                    sqlx::query(
                        "update login_throttles set locked_until = $2 where throttle_key = $1 \
                         and (locked_until is null or locked_until < $2)",
                    )
                    .bind(key)
                    .bind(ts(until))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(ThrottleState {
                    failures,
                    locked_until,
                })
            }

            async fn release_login_attempt(&self, lease: LeaseId) -> Result<(), StoreError> {
                sqlx::query("delete from login_attempt_leases where lease_id = $1")
                    .bind(lease.0)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn complete_login(
                &self,
                login: &CompletedLogin<'_>,
                now: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                let consumed: Option<Vec<u8>> = sqlx::query_scalar(
                    "update login_transactions set consumed_at = $2, session_id = $3 \
                     where id_hash = $1 and consumed_at is null and expires_at > $2 \
                     returning id_hash",
                )
                .bind(login.transaction.as_bytes())
                .bind(ts(now))
                .bind(login.session.session.id.0)
                .fetch_optional(&mut *tx)
                .await?;
                // SECURITY: the password verified must still be the user's, and the user
                // still enabled: a reset or a disable that committed meanwhile wins. The
                // row lock makes a concurrent reset wait for (and then revoke) this session.
                let still_valid: Option<Uuid> = sqlx::query_scalar(&format!(
                    "select user_id from users where user_id = $1 and password_hash = $2 \
                     and not disabled{LOCK_ROW}"
                ))
                .bind(login.session.session.user_id.0)
                .bind(login.verified_hash.0.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                if consumed.is_none() || still_valid.is_none() {
                    tx.rollback().await?;
                    return Ok(false);
                }
                if let Some(old) = &login.replaces {
                    let replaced: Option<Uuid> = sqlx::query_scalar(
                        "update browser_sessions set revoked_at = $2, revoked_reason = 'replaced' \
                         where id_hash = $1 and revoked_at is null returning session_id",
                    )
                    .bind(old.as_bytes())
                    .bind(ts(now))
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(replaced) = replaced {
                        revoke_families(
                            &mut *tx,
                            FamilyFilter::Session(SessionId(replaced)),
                            now,
                            "session_replaced",
                        )
                        .await?;
                    }
                }
                let s = &login.session.session;
                sqlx::query(
                    "insert into browser_sessions (session_id, id_hash, user_id, auth_time, amr, \
                     created_at, last_seen_at, idle_expires_at, absolute_expires_at, ip, user_agent) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(s.id.0)
                .bind(login.session.id_hash.as_bytes())
                .bind(s.user_id.0)
                .bind(ts(s.auth_time))
                .bind(Json(&s.amr))
                .bind(ts(s.created_at))
                .bind(ts(s.last_seen_at))
                .bind(ts(s.idle_expires_at))
                .bind(ts(s.absolute_expires_at))
                .bind(s.ip.as_deref())
                .bind(s.user_agent.as_deref())
                .execute(&mut *tx)
                .await?;
                // The counter restarts; other attempts in flight keep their leases.
                sqlx::query("delete from login_throttles where throttle_key = $1")
                    .bind(login.throttle_key)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("delete from login_attempt_leases where lease_id = $1")
                    .bind(login.lease.0)
                    .execute(&mut *tx)
                    .await?;
                insert_audit(&mut *tx, login.audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn find_session(
                &self,
                id_hash: &TokenHash,
                now: OffsetDateTime,
            ) -> Result<Option<(BrowserSession, User)>, StoreError> {
                let session: Option<SessionRow> = sqlx::query_as(&format!(
                    "select {SESSION_COLUMNS} from browser_sessions \
                     where id_hash = $1 and revoked_at is null \
                     and idle_expires_at > $2 and absolute_expires_at > $2"
                ))
                .bind(id_hash.as_bytes())
                .bind(ts(now))
                .fetch_optional(self.reader())
                .await?;
                let Some(session) = session.map(BrowserSession::from) else {
                    return Ok(None);
                };
                let user = self.find_user_by_id(session.user_id).await?;
                Ok(user.filter(|u| !u.disabled).map(|u| (session, u)))
            }

            async fn touch_session(
                &self,
                id: SessionId,
                now: OffsetDateTime,
                idle_expires_at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "update browser_sessions set last_seen_at = $2, idle_expires_at = $3 \
                     where session_id = $1 and revoked_at is null",
                )
                .bind(id.0)
                .bind(ts(now))
                .bind(ts(idle_expires_at))
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn list_sessions(
                &self,
                user: UserId,
                now: OffsetDateTime,
            ) -> Result<Vec<BrowserSession>, StoreError> {
                let rows: Vec<SessionRow> = sqlx::query_as(&format!(
                    "select {SESSION_COLUMNS} from browser_sessions \
                     where user_id = $1 and revoked_at is null \
                     and idle_expires_at > $2 and absolute_expires_at > $2 \
                     order by last_seen_at desc, created_at desc"
                ))
                .bind(user.0)
                .bind(ts(now))
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(BrowserSession::from).collect())
            }

            async fn revoke_session(
                &self,
                user: UserId,
                session: SessionId,
                now: OffsetDateTime,
                reason: &str,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                let changed = sqlx::query(
                    "update browser_sessions set revoked_at = $3, revoked_reason = $4 \
                     where user_id = $1 and session_id = $2 and revoked_at is null",
                )
                .bind(user.0)
                .bind(session.0)
                .bind(ts(now))
                .bind(reason)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if changed {
                    revoke_families(&mut *tx, FamilyFilter::Session(session), now, reason)
                        .await?;
                    insert_audit(&mut *tx, audit).await?;
                }
                tx.commit().await?;
                Ok(changed)
            }

            async fn revoke_user_sessions(
                &self,
                user: UserId,
                now: OffsetDateTime,
                reason: &str,
                audit: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut tx = self.writer().begin().await?;
                let count = revoke_all(&mut *tx, user, now, reason).await?;
                insert_audit(&mut *tx, &audit.clone().detail("sessions", count)).await?;
                tx.commit().await?;
                Ok(count)
            }

            async fn create_client(
                &self,
                c: &Client,
                audit: &AuditEvent,
            ) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(&format!(
                    "insert into clients ({CLIENT_COLUMNS}) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18)"
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
                hash: &TokenHash,
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

            async fn issue_code(
                &self,
                issue: &IssueCode<'_>,
                now: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                if let Some(transaction) = &issue.transaction {
                    let answered = sqlx::query(
                        "update login_transactions set completed_at = $2 \
                         where id_hash = $1 and completed_at is null and expires_at > $2",
                    )
                    .bind(transaction.as_bytes())
                    .bind(ts(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if answered != 1 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                let c = issue.code;
                if let Some(granted) = issue.consent {
                    let before: Option<Json<Vec<String>>> = sqlx::query_scalar(&format!(
                        "select scopes from consents where user_id = $1 and client_id = $2{LOCK_ROW}"
                    ))
                    .bind(c.user_id.0)
                    .bind(c.client_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let merged = before
                        .map(|j| ScopeSet::from_tokens(j.0))
                        .unwrap_or_default()
                        .union(granted);
                    sqlx::query(
                        "insert into consents (user_id, client_id, scopes, granted_at) \
                         values ($1, $2, $3, $4) \
                         on conflict (user_id, client_id) do update set \
                         scopes = excluded.scopes, granted_at = excluded.granted_at",
                    )
                    .bind(c.user_id.0)
                    .bind(c.client_id.as_str())
                    .bind(Json(merged.to_vec()))
                    .bind(ts(now))
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(&format!(
                    "insert into authorization_codes ({CODE_COLUMNS}) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                ))
                .bind(c.code_hash.as_bytes())
                .bind(c.client_id.as_str())
                .bind(c.user_id.0)
                .bind(c.session_id.0)
                .bind(&c.redirect_uri)
                .bind(c.scope.to_string())
                .bind(c.nonce.as_deref())
                .bind(&c.code_challenge)
                .bind(ts(c.auth_time))
                .bind(Json(&c.amr))
                .bind((!c.claims.is_empty()).then_some(Json(&c.claims)))
                .bind(ts(c.created_at))
                .bind(ts(c.expires_at))
                .execute(&mut *tx)
                .await?;
                for event in issue.audit {
                    insert_audit(&mut *tx, event).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn finish_authorization(
                &self,
                transaction: &TokenHash,
                now: OffsetDateTime,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                audited_change(
                    self.writer(),
                    sqlx::query(
                        "update login_transactions set completed_at = $2 \
                         where id_hash = $1 and completed_at is null",
                    )
                    .bind(transaction.as_bytes())
                    .bind(ts(now)),
                    audit,
                )
                .await
            }

            async fn redeem_code(
                &self,
                r: &CodeRedemption<'_>,
                now: OffsetDateTime,
            ) -> Result<Redemption, StoreError> {
                let mut tx = self.writer().begin().await?;
                // The session the code belongs to, share-locked: a concurrent revocation
                // of it (logout, password reset) waits for this transaction and then also
                // revokes the refresh family it creates.
                sqlx::query(&format!(
                    "select session_id from browser_sessions where session_id = \
                     (select session_id from authorization_codes where code_hash = $1) \
                     and revoked_at is null{LOCK_SHARE}"
                ))
                .bind(r.code_hash.as_bytes())
                .fetch_optional(&mut *tx)
                .await?;
                // One statement decides: unused, unexpired, and bound to this client,
                // redirect URI and PKCE verifier. A mismatch does not burn the code.
                let row: Option<CodeRow> = sqlx::query_as(&format!(
                    "update authorization_codes set consumed_at = $2, \
                     access_token_jti = $6, access_token_expires_at = $7, \
                     refresh_family_id = $8 \
                     where code_hash = $1 and consumed_at is null and expires_at > $2 \
                     and client_id = $3 and redirect_uri = $4 and code_challenge = $5 \
                     and exists (select 1 from browser_sessions s \
                                 where s.session_id = authorization_codes.session_id \
                                 and s.revoked_at is null) \
                     returning {CODE_COLUMNS}"
                ))
                .bind(r.code_hash.as_bytes())
                .bind(ts(now))
                .bind(r.client_id.as_str())
                .bind(r.redirect_uri)
                .bind(r.code_challenge)
                .bind(r.access_token_jti)
                .bind(ts(r.access_token_expires_at))
                .bind(r.refresh.as_ref().map(|f| f.family_id.0))
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = row {
                    let audit = r
                        .audit_issued
                        .clone()
                        .user(UserId(row.user_id))
                        .session(SessionId(row.session_id));
                    if let Some(family) = &r.refresh {
                        // OpenID Connect Core §11: offline_access asks for access that
                        // outlives the browser session; otherwise the family dies with it.
                        let offline = crate::domain::refresh::is_offline(&row.scope);
                        sqlx::query(
                            "insert into refresh_families (family_id, client_id, user_id, \
                             session_id, scope, auth_time, amr, claims, created_at, \
                             absolute_expires_at) \
                             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        )
                        .bind(family.family_id.0)
                        .bind(&row.client_id)
                        .bind(row.user_id)
                        .bind((!offline).then_some(row.session_id))
                        .bind(&row.scope)
                        .bind(row.auth_time.clone())
                        .bind(row.amr.clone())
                        .bind(row.claims.clone())
                        .bind(ts(now))
                        .bind(ts(family.absolute_expires_at))
                        .execute(&mut *tx)
                        .await?;
                        insert_refresh_token(
                            &mut *tx,
                            &family.token_hash,
                            family.family_id,
                            None,
                            now,
                            family.idle_expires_at,
                            r.access_token_jti,
                            r.access_token_expires_at,
                        )
                        .await?;
                    }
                    insert_audit(&mut *tx, &audit).await?;
                    tx.commit().await?;
                    return Ok(Redemption::Redeemed(Box::new(row.into_record()?)));
                }
                // RFC 6749 §4.1.2: a code used twice is refused, and the tokens issued for
                // it are revoked, whoever presents it the second time.
                let used: Option<(Option<Uuid>, Option<Ts>, Option<Uuid>)> = sqlx::query_as(
                    "select access_token_jti, access_token_expires_at, refresh_family_id \
                     from authorization_codes where code_hash = $1 and consumed_at is not null",
                )
                .bind(r.code_hash.as_bytes())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((jti, expires, family)) = used else {
                    tx.rollback().await?;
                    return Ok(Redemption::Invalid);
                };
                if let (Some(jti), Some(expires)) = (jti, expires) {
                    sqlx::query(
                        "insert into revoked_access_tokens (jti, expires_at) values ($1, $2) \
                         on conflict (jti) do nothing",
                    )
                    .bind(jti)
                    .bind(expires)
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(family) = family {
                    revoke_families(&mut *tx, FamilyFilter::Family(FamilyId(family)), now, "code_reused")
                        .await?;
                }
                insert_audit(&mut *tx, r.audit_reused).await?;
                tx.commit().await?;
                Ok(Redemption::Reused)
            }

            async fn is_access_token_revoked(
                &self,
                jti: Uuid,
                session: Option<SessionId>,
                client: &ClientId,
            ) -> Result<bool, StoreError> {
                // One round trip, three indexed lookups: the jti denylist (revocation, code
                // replay, family revocation), the session the token was issued in (logout,
                // admin), and the client it was issued to (deleted: its tokens end too;
                // disabled: they are refused while it stays so).
                let found = sqlx::query(
                    "select 1 from revoked_access_tokens where jti = $1 \
                     union all \
                     select 1 from browser_sessions \
                     where session_id = $2 and revoked_at is not null \
                     union all \
                     select 1 where not exists \
                     (select 1 from clients where client_id = $3 and not disabled)",
                )
                .bind(jti)
                .bind(session.map(|s| s.0))
                .bind(client.as_str())
                .fetch_optional(self.reader())
                .await?;
                Ok(found.is_some())
            }

            async fn revoke_access_token(
                &self,
                jti: Uuid,
                expires_at: OffsetDateTime,
                audit: &AuditEvent,
            ) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "insert into revoked_access_tokens (jti, expires_at) values ($1, $2) \
                     on conflict (jti) do nothing",
                )
                .bind(jti)
                .bind(ts(expires_at))
                .execute(&mut *tx)
                .await?;
                insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn find_refresh_token(
                &self,
                hash: &TokenHash,
                now: OffsetDateTime,
            ) -> Result<Option<RefreshTokenRecord>, StoreError> {
                let row: Option<RefreshRow> = sqlx::query_as(
                    "select t.token_hash, t.family_id, f.client_id, f.user_id, f.session_id, \
                     f.scope, f.auth_time, f.amr, f.claims, t.issued_at, t.idle_expires_at, \
                     f.absolute_expires_at, t.rotated_at, f.revoked_at as family_revoked_at, \
                     t.successor_response, t.successor_until, \
                     s.revoked_at as session_revoked_at, \
                     s.idle_expires_at as session_idle_expires_at, \
                     s.absolute_expires_at as session_absolute_expires_at, u.disabled \
                     from refresh_tokens t \
                     join refresh_families f on f.family_id = t.family_id \
                     join users u on u.user_id = f.user_id \
                     left join browser_sessions s on s.session_id = f.session_id \
                     where t.token_hash = $1",
                )
                .bind(hash.as_bytes())
                .fetch_optional(self.reader())
                .await?;
                row.map(|r| r.into_record(now)).transpose()
            }

            async fn rotate_refresh_token(
                &self,
                r: &RefreshRotation<'_>,
                now: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                // Lock order, the same as every revocation's: the browser session, then
                // the family. A revocation running concurrently either waits for this
                // rotation (and then denylists the access token it issues) or makes it
                // find the family revoked.
                if let Some((session, idle_expires_at)) = r.touch_session {
                    let live: Option<Uuid> = sqlx::query_scalar(&format!(
                        "select session_id from browser_sessions \
                         where session_id = $1 and revoked_at is null{LOCK_ROW}"
                    ))
                    .bind(session.0)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if live.is_none() {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    // A session-bound refresh is activity of the browser session (written
                    // at most once per session.touch_interval, as for the pages).
                    if let Some(idle_expires_at) = idle_expires_at {
                        sqlx::query(
                            "update browser_sessions set last_seen_at = $2, idle_expires_at = $3 \
                             where session_id = $1 and idle_expires_at < $3",
                        )
                        .bind(session.0)
                        .bind(ts(now))
                        .bind(ts(idle_expires_at))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                let family: Option<Uuid> = sqlx::query_scalar(&format!(
                    "select family_id from refresh_families where family_id = $1 \
                     and revoked_at is null and absolute_expires_at > $2{LOCK_SHARE}"
                ))
                .bind(r.family_id.0)
                .bind(ts(now))
                .fetch_optional(&mut *tx)
                .await?;
                if family.is_none() {
                    tx.rollback().await?;
                    return Ok(false);
                }
                // The compare-and-swap: exactly one presentation of a token can rotate it,
                // on one instance or many (the row lock makes a concurrent one wait and
                // then find rotated_at set).
                let (response, until) = match &r.sealed_response {
                    Some((blob, until)) => (Some(blob.as_slice()), Some(ts(*until))),
                    None => (None, None),
                };
                let rotated = sqlx::query(
                    "update refresh_tokens set rotated_at = $2, successor_response = $3, \
                     successor_until = $4 \
                     where token_hash = $1 and family_id = $5 and rotated_at is null \
                     and idle_expires_at > $2 \
                     and exists (select 1 from refresh_families f \
                                 where f.family_id = refresh_tokens.family_id \
                                 and f.revoked_at is null and f.absolute_expires_at > $2)",
                )
                .bind(r.presented.as_bytes())
                .bind(ts(now))
                .bind(response)
                .bind(until)
                .bind(r.family_id.0)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !rotated {
                    tx.rollback().await?;
                    return Ok(false);
                }
                // The presented token's parent is now two rotations old: its sealed
                // response must not be served again (a replay of it is reuse).
                sqlx::query(
                    "update refresh_tokens set successor_response = null, successor_until = null \
                     where token_hash = (select parent_hash from refresh_tokens \
                                         where token_hash = $1) \
                     and successor_response is not null",
                )
                .bind(r.presented.as_bytes())
                .execute(&mut *tx)
                .await?;
                insert_refresh_token(
                    &mut *tx,
                    &r.successor,
                    r.family_id,
                    Some(&r.presented),
                    now,
                    r.successor_idle_expires_at,
                    r.access_token_jti,
                    r.access_token_expires_at,
                )
                .await?;
                insert_audit(&mut *tx, r.audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn revoke_refresh_family(
                &self,
                family: FamilyId,
                now: OffsetDateTime,
                reason: &str,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                let revoked = revoke_families(
                    &mut *tx,
                    FamilyFilter::Family(family),
                    now,
                    reason,
                )
                .await?
                    == 1;
                insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(revoked)
            }

            async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
                let rows: Vec<SigningKeyRow> = sqlx::query_as(
                    "select kid, alg, state, encrypted_private_key, public_jwk, created_at, \
                     activated_at, retired_at, remove_after from signing_keys \
                     order by created_at, kid",
                )
                .fetch_all(self.reader())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| SigningKeyRecord {
                        kid: r.kid,
                        alg: r.alg,
                        state: r.state,
                        encrypted_private_key: r.encrypted_private_key,
                        public_jwk: r.public_jwk.0,
                        created_at: from_ts(r.created_at),
                        activated_at: r.activated_at.map(from_ts),
                        retired_at: r.retired_at.map(from_ts),
                        remove_after: r.remove_after.map(from_ts),
                    })
                    .collect())
            }

            async fn insert_signing_key(&self, k: &SigningKeyRecord) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "insert into signing_keys (kid, alg, state, encrypted_private_key, \
                     public_jwk, created_at, activated_at, retired_at, remove_after) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&k.kid)
                .bind(&k.alg)
                .bind(&k.state)
                .bind(&k.encrypted_private_key)
                .bind(Json(&k.public_jwk))
                .bind(ts(k.created_at))
                .bind(k.activated_at.map(ts))
                .bind(k.retired_at.map(ts))
                .bind(k.remove_after.map(ts))
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, "a current or next key for this algorithm"))?;
                notify_keys_changed(&mut tx, "inserted").await?;
                tx.commit().await?;
                Ok(())
            }

            async fn retire_signing_key(
                &self,
                r: &KeyRetirement<'_>,
            ) -> Result<Retired, StoreError> {
                let mut tx = self.writer().begin().await?;
                // Locks the row on Postgres: a concurrent rotation waits here, then sees
                // the key already retired and loses the race.
                let found: Option<(String, String, Vec<u8>)> = sqlx::query_as(&format!(
                    "select state, alg, encrypted_private_key from signing_keys \
                     where kid = $1{LOCK_ROW}"
                ))
                .bind(r.kid)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((previous_state, alg, stored_private_key)) = found else {
                    return Ok(if r.only_if_current {
                        Retired::LostRace
                    } else {
                        Retired::NotFound
                    });
                };
                let was_current = previous_state == "current";
                if r.only_if_current && !was_current {
                    return Ok(Retired::LostRace);
                }
                if r.expected_private_key.is_some_and(|e| e != stored_private_key.as_slice()) {
                    return Ok(Retired::LostRace);
                }
                let changed = sqlx::query(
                    "update signing_keys set state = 'retired', \
                     retired_at = coalesce(retired_at, $2), \
                     remove_after = case when remove_after is null or remove_after > $3 \
                     then $3 else remove_after end \
                     where kid = $1 and (state = 'current' or $4 = 0)",
                )
                .bind(r.kid)
                .bind(ts(r.now))
                .bind(ts(r.remove_after))
                .bind(i32::from(r.only_if_current))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed != 1 {
                    return Ok(Retired::LostRace);
                }
                let mut promoted = None;
                let mut next = None;
                if was_current {
                    let mut fresh = r.fresh.iter();
                    promoted = sqlx::query_scalar(
                        "update signing_keys set state = 'current', activated_at = $2 \
                         where kid = (select kid from signing_keys \
                         where alg = $1 and state = 'next' order by created_at, kid limit 1) \
                         returning kid",
                    )
                    .bind(&alg)
                    .bind(ts(r.now))
                    .fetch_optional(&mut *tx)
                    .await?;
                    if promoted.is_none() {
                        if let Some(k) = fresh.next() {
                            insert_key(&mut *tx, k, "current", Some(r.now)).await?;
                            promoted = Some(k.kid.clone());
                        }
                    }
                    if let Some(k) = fresh.next() {
                        if insert_key(&mut *tx, k, "next", None).await? {
                            next = Some(k.kid.clone());
                        }
                    }
                } else if previous_state == "next" {
                    // A compromised next key is replaced at once: the algorithm keeps a
                    // pre-published successor for its next rotation.
                    if let Some(k) = r.fresh.first() {
                        if insert_key(&mut *tx, k, "next", None).await? {
                            next = Some(k.kid.clone());
                        }
                    }
                }
                // Keys retired with remove_after = now stay listed until a later change.
                let deleted = sqlx::query(
                    "delete from signing_keys where state = 'retired' and remove_after < $1",
                )
                .bind(ts(r.now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let mut audit = r.audit.clone();
                if let serde_json::Value::Object(map) = &mut audit.details {
                    map.insert("kid".into(), r.kid.into());
                    map.insert("alg".into(), alg.clone().into());
                    map.insert("previous_state".into(), previous_state.clone().into());
                    map.insert("promoted".into(), promoted.clone().into());
                    map.insert("next".into(), next.clone().into());
                    map.insert("deleted".into(), deleted.into());
                }
                insert_audit(&mut *tx, &audit).await?;
                notify_keys_changed(&mut tx, "retired").await?;
                tx.commit().await?;
                Ok(Retired::Retired {
                    previous_state,
                    promoted,
                    next,
                    deleted,
                })
            }

            async fn reencrypt_signing_keys(
                &self,
                keys: &[ReencryptedKey],
                audit: &AuditEvent,
            ) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await?;
                // Locks every row on Postgres until the commit.
                let mut stored: Vec<String> = sqlx::query_scalar(&format!(
                    "select kid from signing_keys order by kid{LOCK_ROW}"
                ))
                .fetch_all(&mut *tx)
                .await?;
                let mut given: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
                given.sort_unstable();
                stored.sort_unstable();
                if stored != given {
                    return Err(StoreError::Conflict("a signing key added or removed meanwhile"));
                }
                for k in keys {
                    let changed = sqlx::query(
                        "update signing_keys set encrypted_private_key = $3 \
                         where kid = $1 and encrypted_private_key = $2",
                    )
                    .bind(&k.kid)
                    .bind(&k.old)
                    .bind(&k.new)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if changed != 1 {
                        return Err(StoreError::Conflict("a signing key changed meanwhile"));
                    }
                }
                insert_audit(&mut *tx, audit).await?;
                notify_keys_changed(&mut tx, "reencrypted").await?;
                tx.commit().await?;
                Ok(())
            }

            async fn purge_removed_signing_keys(
                &self,
                now: time::OffsetDateTime,
            ) -> Result<u64, StoreError> {
                let mut tx = self.writer().begin().await?;
                // Strictly before now, as in `retire_signing_key`: a key retired at once
                // stays listed (as retired) until a later pass.
                let deleted = sqlx::query(
                    "delete from signing_keys where state = 'retired' and remove_after < $1",
                )
                .bind(ts(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if deleted > 0 {
                    notify_keys_changed(&mut tx, "deleted").await?;
                }
                tx.commit().await?;
                Ok(deleted)
            }

            async fn listen_key_changes(
                &self,
            ) -> Result<Option<crate::storage::KeyChangeListener>, StoreError> {
                self.key_listener().await
            }

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

            async fn table_sizes(
                &self,
                since: OffsetDateTime,
            ) -> Result<Vec<crate::storage::TableSize>, StoreError> {
                let mut out = Vec::with_capacity(crate::storage::TABLES.len());
                for (table, added) in crate::storage::TABLES {
                    // The names come from the constant list above, never from input.
                    let (rows, recent): (i64, Option<i64>) = match added {
                        Some(column) => sqlx::query_as(&format!(
                            "select count(*), sum(case when {column} >= $1 then 1 else 0 end) \
                             from {table}"
                        ))
                        .bind(ts(since))
                        .fetch_one(self.reader())
                        .await?,
                        None => (
                            sqlx::query_scalar(&format!("select count(*) from {table}"))
                                .fetch_one(self.reader())
                                .await?,
                            None,
                        ),
                    };
                    let count = |n: i64| u64::try_from(n).unwrap_or(0);
                    out.push(crate::storage::TableSize {
                        table,
                        rows: count(rows),
                        recent: added.map(|_| count(recent.unwrap_or(0))),
                    });
                }
                Ok(out)
            }

            async fn purge_expired(
                &self,
                c: &PurgeCutoffs,
                batch: u32,
            ) -> Result<u64, StoreError> {
                let batch = i64::from(batch);
                let mut purged = sqlx::query(
                    "delete from login_transactions where id_hash in \
                     (select id_hash from login_transactions where expires_at <= $1 limit $2)",
                )
                .bind(ts(c.now))
                .bind(batch)
                .execute(self.writer())
                .await?
                .rows_affected();
                purged += sqlx::query(
                    "delete from browser_sessions where session_id in \
                     (select session_id from browser_sessions \
                      where revoked_at <= $1 or (revoked_at is null \
                      and (absolute_expires_at <= $1 or idle_expires_at <= $1)) limit $2)",
                )
                .bind(ts(c.ended_before))
                .bind(batch)
                .execute(self.writer())
                .await?
                .rows_affected();
                purged += sqlx::query(
                    "delete from authorization_codes where code_hash in \
                     (select code_hash from authorization_codes \
                      where expires_at <= $1 and (access_token_expires_at is null \
                      or access_token_expires_at <= $1) limit $2)",
                )
                .bind(ts(c.now))
                .bind(batch)
                .execute(self.writer())
                .await?
                .rows_affected();
                // Families past their absolute limit, or revoked before the retention
                // cutoff, go with their tokens (on delete cascade). Rotated tokens stay
                // with their family so a late replay is still detected as reuse.
                purged += sqlx::query(
                    "delete from refresh_tokens where family_id in \
                     (select family_id from refresh_families \
                      where absolute_expires_at <= $1 or revoked_at <= $3 limit $2)",
                )
                .bind(ts(c.now))
                .bind(batch)
                .bind(ts(c.ended_before))
                .execute(self.writer())
                .await?
                .rows_affected();
                purged += sqlx::query(
                    "delete from refresh_families where family_id in \
                     (select family_id from refresh_families \
                      where absolute_expires_at <= $1 or revoked_at <= $3 limit $2)",
                )
                .bind(ts(c.now))
                .bind(batch)
                .bind(ts(c.ended_before))
                .execute(self.writer())
                .await?
                .rows_affected();
                // The retry window's sealed responses are wiped once it has passed.
                sqlx::query(
                    "update refresh_tokens set successor_response = null, successor_until = null \
                     where token_hash in (select token_hash from refresh_tokens \
                     where successor_response is not null and successor_until <= $1 limit $2)",
                )
                .bind(ts(c.now))
                .bind(batch)
                .execute(self.writer())
                .await?;
                purged += sqlx::query(
                    "delete from revoked_access_tokens where jti in \
                     (select jti from revoked_access_tokens where expires_at <= $1 limit $2)",
                )
                .bind(ts(c.now))
                .bind(batch)
                .execute(self.writer())
                .await?
                .rows_affected();
                // A row whose failures and lock both ended before the window counts for
                // nothing any more (the next failure would restart at 1).
                purged += sqlx::query(
                    "delete from login_throttles where throttle_key in \
                     (select throttle_key from login_throttles \
                      where last_failure_at < $1 \
                      and (locked_until is null or locked_until < $1) limit $2)",
                )
                .bind(ts(c.throttle_before))
                .bind(batch)
                .execute(self.writer())
                .await?
                .rows_affected();
                // Leases lost with a crashed or cancelled sign-in.
                purged += sqlx::query(
                    "delete from login_attempt_leases where lease_id in \
                     (select lease_id from login_attempt_leases where expires_at < $1 limit $2)",
                )
                .bind(ts(c.now))
                .bind(batch)
                .execute(self.writer())
                .await?
                .rows_affected();
                if let Some(before) = c.audit_before {
                    purged += sqlx::query(
                        "delete from audit_events where audit_event_id in \
                         (select audit_event_id from audit_events where at < $1 limit $2)",
                    )
                    .bind(ts(before))
                    .bind(batch)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                }
                Ok(purged)
            }

            // --- The admin API and the CLI -------------------------------------------

            async fn search_audit(
                &self,
                q: &AuditSearch,
            ) -> Result<Vec<AuditRecord>, StoreError> {
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
                         require_pkce = $11, introspection = $12 \
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
                    .bind(c.introspection),
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

            async fn list_users_after(
                &self,
                after: Option<&Username>,
                limit: u32,
            ) -> Result<Vec<User>, StoreError> {
                let rows: Vec<UserRow> = sqlx::query_as(&format!(
                    "select {USER_COLUMNS} from users \
                     where ($1 is null or username > $1) order by username limit $2"
                ))
                .bind(after.map(Username::as_str))
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(|r| r.into_parts().0).collect())
            }

            async fn update_user_profile(
                &self,
                id: UserId,
                p: &UserProfile,
                now: OffsetDateTime,
                audit: &AuditEvent,
            ) -> Result<Option<User>, StoreError> {
                let mut tx = self.writer().begin().await?;
                let row: Option<UserRow> = sqlx::query_as(&format!(
                    "update users set email = $2, email_verified = $3, name = $4, \
                     updated_at = $5 where user_id = $1 returning {USER_COLUMNS}"
                ))
                .bind(id.0)
                .bind(p.email.as_deref())
                .bind(p.email_verified)
                .bind(p.name.as_deref())
                .bind(ts(now))
                .fetch_optional(&mut *tx)
                .await?;
                if row.is_some() {
                    insert_audit(&mut *tx, audit).await?;
                }
                tx.commit().await?;
                Ok(row.map(|r| r.into_parts().0))
            }

            async fn delete_user(
                &self,
                id: UserId,
                throttle_key: Option<&str>,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                // The user's refresh families go by cascade; the access tokens issued from
                // them are denylisted first.
                revoke_families(&mut *tx, FamilyFilter::User(id), audit.at, "user_deleted")
                    .await?;
                let deleted = sqlx::query("delete from users where user_id = $1")
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                // browser_sessions and consents went with the row (on delete cascade);
                // codes have no foreign key and would fail without their session anyway.
                sqlx::query("delete from authorization_codes where user_id = $1")
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("delete from login_throttles where throttle_key = $1")
                    .bind(throttle_key)
                    .execute(&mut *tx)
                    .await?;
                insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }
        }

        /// Ends every session of `user` and every refresh-token family of the user.
        async fn revoke_all(
            conn: &mut <$db as sqlx::Database>::Connection,
            user: UserId,
            now: OffsetDateTime,
            reason: &str,
        ) -> Result<u64, StoreError> {
            let sessions = sqlx::query(
                "update browser_sessions set revoked_at = $2, revoked_reason = $3 \
                 where user_id = $1 and revoked_at is null",
            )
            .bind(user.0)
            .bind(ts(now))
            .bind(reason)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            revoke_families(conn, FamilyFilter::User(user), now, reason).await?;
            Ok(sessions)
        }

        enum FamilyFilter {
            Family(FamilyId),
            Session(SessionId),
            User(UserId),
            Client(String),
        }

        /// Revokes the live families matching `filter` and denylists the unexpired access
        /// tokens issued from them, so revocation reaches tokens already handed out. The
        /// family rows are updated (locked) first: a rotation in flight either finishes
        /// before (and its access token is denylisted here) or finds the family revoked.
        async fn revoke_families(
            conn: &mut <$db as sqlx::Database>::Connection,
            filter: FamilyFilter,
            now: OffsetDateTime,
            reason: &str,
        ) -> Result<u64, StoreError> {
            let (column, uuid, text) = match filter {
                FamilyFilter::Family(f) => ("family_id", Some(f.0), None),
                FamilyFilter::Session(s) => ("session_id", Some(s.0), None),
                FamilyFilter::User(u) => ("user_id", Some(u.0), None),
                FamilyFilter::Client(c) => ("client_id", None, Some(c)),
            };
            macro_rules! bind_id {
                ($q:expr) => {
                    match (&uuid, &text) {
                        (Some(id), _) => $q.bind(*id),
                        (None, Some(t)) => $q.bind(t.clone()),
                        (None, None) => $q.bind(Option::<Uuid>::None),
                    }
                };
            }
            let update = format!(
                "update refresh_families set revoked_at = $2, revoked_reason = $3 \
                 where {column} = $1 and revoked_at is null"
            );
            let denylist = format!(
                "insert into revoked_access_tokens (jti, expires_at) \
                 select t.access_token_jti, t.access_token_expires_at from refresh_tokens t \
                 where t.access_token_expires_at > $2 and t.family_id in \
                 (select family_id from refresh_families where {column} = $1) \
                 on conflict (jti) do nothing"
            );
            // The retry window's sealed responses of a dead family are wiped at once.
            let wipe = format!(
                "update refresh_tokens set successor_response = null, successor_until = null \
                 where successor_response is not null and family_id in \
                 (select family_id from refresh_families where {column} = $1)"
            );
            let revoked = bind_id!(sqlx::query(&update))
                .bind(ts(now))
                .bind(reason)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            bind_id!(sqlx::query(&denylist))
                .bind(ts(now))
                .execute(&mut *conn)
                .await?;
            bind_id!(sqlx::query(&wipe)).execute(&mut *conn).await?;
            Ok(revoked)
        }

        #[allow(clippy::too_many_arguments)]
        async fn insert_refresh_token(
            conn: &mut <$db as sqlx::Database>::Connection,
            hash: &TokenHash,
            family: FamilyId,
            parent: Option<&TokenHash>,
            now: OffsetDateTime,
            idle_expires_at: OffsetDateTime,
            access_token_jti: Uuid,
            access_token_expires_at: OffsetDateTime,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "insert into refresh_tokens (token_hash, family_id, parent_hash, issued_at, \
                 idle_expires_at, access_token_jti, access_token_expires_at) \
                 values ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(hash.as_bytes())
            .bind(family.0)
            .bind(parent.map(|p| p.as_bytes().to_vec()))
            .bind(ts(now))
            .bind(ts(idle_expires_at))
            .bind(access_token_jti)
            .bind(ts(access_token_expires_at))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    };
}

pub(crate) use sql_store;
