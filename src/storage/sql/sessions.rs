//! The SQL of `SessionStore`: sign-in transactions, attempt leases and lockout
//! counters, browser sessions.
macro_rules! sql_sessions {
    ($store:ident, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::audit::AuditEvent;
        use crate::domain::secret::{TokenHash, kind};
        use crate::domain::session::{BrowserSession, SessionId};
        use crate::domain::throttle::{LeaseId, ThrottlePolicy, ThrottleState};
        use crate::domain::user::{User, UserId};
        use crate::storage::{
            CompletedLogin, CompletedStepUp, LoginTransaction, Reservation, SessionStore,
            StoreError, UserStore, VerifiedCredential,
        };

        const SESSION_COLUMNS: &str = "session_id, user_id, auth_time, amr, factors, \
             created_at, last_seen_at, idle_expires_at, absolute_expires_at, ip, user_agent";

        #[derive(sqlx::FromRow)]
        struct SessionRow {
            session_id: Uuid,
            user_id: Uuid,
            auth_time: Ts,
            amr: Json<Vec<String>>,
            factors: Json<crate::domain::mfa::SessionFactors>,
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
                    factors: r.factors.0,
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
        pub(super) struct LoginTransactionRow {
            id_hash: Vec<u8>,
            binding_hash: Vec<u8>,
            return_to: String,
            request: Option<Json<serde_json::Value>>,
            created_at: Ts,
            expires_at: Ts,
            session_id: Option<Uuid>,
            second_step: Option<Json<crate::domain::second_step::SecondStep>>,
        }

        pub(super) const TRANSACTION_COLUMNS: &str =
            "id_hash, binding_hash, return_to, request, created_at, expires_at, session_id, \
             second_step";

        /// The unexpired login transaction `id_hash` that also meets `condition` (a fixed
        /// SQL predicate, never request data).
        pub(super) async fn find_transaction(
            pool: &sqlx::Pool<$db>,
            condition: &'static str,
            id_hash: &TokenHash<kind::LoginTransaction>,
            now: OffsetDateTime,
        ) -> Result<Option<LoginTransaction>, StoreError> {
            let row: Option<LoginTransactionRow> = sqlx::query_as(&format!(
                "select {TRANSACTION_COLUMNS} from login_transactions \
                 where id_hash = $1 and {condition} and expires_at > $2"
            ))
            .bind(id_hash.as_bytes())
            .bind(ts(now))
            .fetch_optional(pool)
            .await?;
            row.map(LoginTransactionRow::into_record).transpose()
        }

        impl LoginTransactionRow {
            pub(super) fn into_record(self) -> Result<LoginTransaction, StoreError> {
                Ok(LoginTransaction {
                    id_hash: hash_of(self.id_hash)?,
                    binding_hash: hash_of(self.binding_hash)?,
                    return_to: self.return_to,
                    request: self.request.map(|j| j.0),
                    created_at: from_ts(self.created_at),
                    expires_at: from_ts(self.expires_at),
                    session_id: self.session_id.map(SessionId),
                    second_step: self.second_step.map(|s| s.0),
                })
            }
        }

        #[async_trait]
        impl SessionStore for $store {
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
                id_hash: &TokenHash<kind::LoginTransaction>,
                now: OffsetDateTime,
            ) -> Result<Option<LoginTransaction>, StoreError> {
                find_transaction(self.reader(), "consumed_at is null", id_hash, now).await
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
                     and (second_step is not null) = $4 \
                     returning id_hash",
                )
                .bind(login.transaction.as_bytes())
                .bind(ts(now))
                .bind(login.session.session.id.0)
                .bind(login.second_step)
                .fetch_optional(&mut *tx)
                .await?;
                // SECURITY: the password verified must still be the user's, and the user
                // still enabled: a reset or a disable that committed meanwhile wins. The
                // row lock makes a concurrent reset wait for (and then revoke) this session.
                let user = login.session.session.user_id.0;
                let still_valid: Option<Uuid> = match login.verified {
                    VerifiedCredential::Password(hash) => {
                        sqlx::query_scalar(&format!(
                            "select user_id from users where user_id = $1 \
                             and password_hash = $2 and not disabled{LOCK_ROW}"
                        ))
                        .bind(user)
                        .bind(hash.0.as_str())
                        .fetch_optional(&mut *tx)
                        .await?
                    }
                    // The passkey must still be the user's (not removed meanwhile).
                    VerifiedCredential::Passkey(factor) => {
                        sqlx::query_scalar(&format!(
                            "select user_id from users where user_id = $1 and not disabled \
                             and exists (select 1 from user_factors where factor_id = $2 \
                             and user_id = $1 and kind = 'passkey' and confirmed = true)\
                             {LOCK_ROW}"
                        ))
                        .bind(user)
                        .bind(factor)
                        .fetch_optional(&mut *tx)
                        .await?
                    }
                };
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
                     created_at, last_seen_at, idle_expires_at, absolute_expires_at, ip, user_agent, \
                     factors) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
                .bind(Json(&s.factors))
                .execute(&mut *tx)
                .await?;
                // The counter restarts; other attempts in flight keep their leases.
                for key in std::iter::once(login.throttle_key).chain(login.also_clear) {
                    sqlx::query("delete from login_throttles where throttle_key = $1")
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("delete from login_attempt_leases where lease_id = $1")
                    .bind(login.lease.0)
                    .execute(&mut *tx)
                    .await?;
                insert_audit(&mut *tx, login.audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn set_second_step(
                &self,
                id_hash: &TokenHash<kind::LoginTransaction>,
                step: &crate::domain::second_step::SecondStep,
                now: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let changed = sqlx::query(
                    "update login_transactions set second_step = $2 \
                     where id_hash = $1 and consumed_at is null and expires_at > $3 \
                     and second_step is null",
                )
                .bind(id_hash.as_bytes())
                .bind(Json(step))
                .bind(ts(now))
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(changed == 1)
            }

            async fn complete_step_up(
                &self,
                s: &CompletedStepUp<'_>,
                now: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                let consumed = sqlx::query(
                    "update login_transactions set consumed_at = $2, session_id = $3 \
                     where id_hash = $1 and consumed_at is null and expires_at > $2",
                )
                .bind(s.transaction.as_bytes())
                .bind(ts(now))
                .bind(s.session.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let stepped = sqlx::query(
                    "update browser_sessions set factors = $2, amr = $3, auth_time = $4 \
                     where session_id = $1 and revoked_at is null \
                     and idle_expires_at > $5 and absolute_expires_at > $5",
                )
                .bind(s.session.0)
                .bind(Json(s.factors))
                .bind(Json(s.factors.amr()))
                .bind(ts(s.auth_time))
                .bind(ts(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if consumed != 1 || stepped != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query("delete from login_throttles where throttle_key = $1")
                    .bind(s.throttle_key)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("delete from login_attempt_leases where lease_id = $1")
                    .bind(s.lease.0)
                    .execute(&mut *tx)
                    .await?;
                insert_audit(&mut *tx, s.audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn find_session(
                &self,
                id_hash: &TokenHash<kind::SessionToken>,
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
        }

    };
}

pub(crate) use sql_sessions;
