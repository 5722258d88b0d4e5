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

        use crate::audit::{AuditEvent, AuditQuery, AuditRecord};
        use crate::domain::secret::TokenHash;
        use crate::domain::session::{BrowserSession, SessionId};
        use crate::domain::throttle::{ThrottlePolicy, ThrottleState};
        use crate::domain::user::{NewUser, PasswordHash, User, UserId, Username};
        use crate::storage::{
            CompletedLogin, LoginTransaction, PasswordChange, PurgeCutoffs, Reservation,
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
                "insert into audit_events \
                 (at, kind, outcome, user_id, client_id, session_id, ip, request_id, details) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
            .execute(executor)
            .await?;
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
                let row: Option<LoginTransactionRow> = sqlx::query_as(
                    "select id_hash, binding_hash, return_to, request, created_at, expires_at \
                     from login_transactions \
                     where id_hash = $1 and consumed_at is null and expires_at > $2",
                )
                .bind(id_hash.as_bytes())
                .bind(ts(now))
                .fetch_optional(self.reader())
                .await?;
                row.map(|r| {
                    Ok(LoginTransaction {
                        id_hash: hash_of(r.id_hash)?,
                        binding_hash: hash_of(r.binding_hash)?,
                        return_to: r.return_to,
                        request: r.request.map(|j| j.0),
                        created_at: from_ts(r.created_at),
                        expires_at: from_ts(r.expires_at),
                    })
                })
                .transpose()
            }

            async fn reserve_login_attempt(
                &self,
                key: &str,
                now: OffsetDateTime,
                policy: &ThrottlePolicy,
            ) -> Result<Reservation, StoreError> {
                let window_start = ts(policy.window_start(now));
                let mut tx = self.writer().begin().await?;
                // The count restarts only when both the last failure and the end of any
                // lock lie before the window, so lockouts keep doubling up to the cap.
                let failures: Option<i32> = sqlx::query_scalar(
                    "insert into login_throttles \
                     (throttle_key, failures, last_failure_at, locked_until) \
                     values ($1, 1, $2, null) \
                     on conflict (throttle_key) do update set \
                     failures = case when login_throttles.last_failure_at < $3 \
                                      and (login_throttles.locked_until is null \
                                           or login_throttles.locked_until < $3) \
                                     then 1 else login_throttles.failures + 1 end, \
                     last_failure_at = $2 \
                     where login_throttles.locked_until is null \
                        or login_throttles.locked_until <= $2 \
                     returning failures",
                )
                .bind(key)
                .bind(ts(now))
                .bind(window_start)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(failures) = failures else {
                    let until: Option<Ts> = sqlx::query_scalar(
                        "select locked_until from login_throttles where throttle_key = $1",
                    )
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten();
                    tx.commit().await?;
                    return Ok(Reservation::Locked {
                        until: until.map(from_ts).unwrap_or(now),
                    });
                };
                let failures = u32::try_from(failures).unwrap_or(0);
                let locked_until = policy.lockout_after(failures).map(|d| now + d);
                if let Some(until) = locked_until {
                    sqlx::query(
                        "update login_throttles set locked_until = $2 where throttle_key = $1",
                    )
                    .bind(key)
                    .bind(ts(until))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(Reservation::Granted(ThrottleState {
                    failures,
                    locked_until,
                }))
            }

            async fn complete_login(
                &self,
                login: &CompletedLogin<'_>,
                now: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                let consumed: Option<Vec<u8>> = sqlx::query_scalar(
                    "update login_transactions set consumed_at = $2 \
                     where id_hash = $1 and consumed_at is null and expires_at > $2 \
                     returning id_hash",
                )
                .bind(login.transaction.as_bytes())
                .bind(ts(now))
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
                    sqlx::query(
                        "update browser_sessions set revoked_at = $2, revoked_reason = 'replaced' \
                         where id_hash = $1 and revoked_at is null",
                    )
                    .bind(old.as_bytes())
                    .bind(ts(now))
                    .execute(&mut *tx)
                    .await?;
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
                sqlx::query("delete from login_throttles where throttle_key = $1")
                    .bind(login.throttle_key)
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
                let revoked = sqlx::query(
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
                if revoked {
                    insert_audit(&mut *tx, audit).await?;
                }
                tx.commit().await?;
                Ok(revoked)
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
                .execute(self.writer())
                .await
                .map_err(|e| conflict_or(e, "a current key for this algorithm"))?;
                Ok(())
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
                let rows: Vec<AuditRow> = sqlx::query_as(
                    "select audit_event_id, at, kind, outcome, user_id, client_id, session_id, \
                     ip, request_id, details from audit_events \
                     where ($1 is null or kind = $1) and ($2 is null or user_id = $2) \
                     order by audit_event_id desc limit $3",
                )
                .bind(q.kind.as_deref())
                .bind(q.user_id.map(|u| u.0))
                .bind(i64::from(q.limit.max(1)))
                .fetch_all(self.reader())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| AuditRecord {
                        id: r.audit_event_id,
                        at: from_ts(r.at),
                        kind: r.kind,
                        outcome: r.outcome,
                        user_id: r.user_id.map(UserId),
                        client_id: r.client_id,
                        session_id: r.session_id.map(SessionId),
                        ip: r.ip,
                        request_id: r.request_id,
                        details: r.details.0,
                    })
                    .collect())
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
                      where absolute_expires_at <= $1 or idle_expires_at <= $1 \
                      or revoked_at <= $3 limit $2)",
                )
                .bind(ts(c.now))
                .bind(batch)
                .bind(ts(c.revoked_before))
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
                Ok(purged)
            }
        }

        async fn revoke_all<'c, E>(
            executor: E,
            user: UserId,
            now: OffsetDateTime,
            reason: &str,
        ) -> Result<u64, StoreError>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            Ok(sqlx::query(
                "update browser_sessions set revoked_at = $2, revoked_reason = $3 \
                 where user_id = $1 and revoked_at is null",
            )
            .bind(user.0)
            .bind(ts(now))
            .bind(reason)
            .execute(executor)
            .await?
            .rows_affected())
        }
    };
}

pub(crate) use sql_store;
