//! The SQL shared by both backends, one file per aggregate. The statements are written
//! once, in the dialect Postgres and SQLite have in common (`$n` parameters, `returning`,
//! `on conflict`), as one macro per aggregate (`sql_users!`, `sql_grants!`, …) that
//! `sql_store!` instantiates for a backend; each backend module supplies `Ts` (its
//! timestamp column type), `ts`/`from_ts` conversions, the `LOCK_ROW`/`LOCK_SHARE`
//! clauses, and `reader()`/`writer()` pools.
//!
//! This file holds `sql_common!`: the helpers every aggregate uses (hash and row
//! conversions, the audit insert, the revocation cascade of sessions and refresh
//! families).

pub(crate) mod audit;
pub(crate) mod clients;
pub(crate) mod factors;
pub(crate) mod grants;
pub(crate) mod housekeeping;
pub(crate) mod sessions;
pub(crate) mod signing_keys;
pub(crate) mod users;

/// The whole store for one backend: the shared helpers in the backend's module, and one
/// submodule per aggregate implementing its trait.
macro_rules! sql_store {
    ($store:ident, $db:ty, $backend:expr) => {
        $crate::storage::sql::sql_common!($db);

        mod users {
            use super::*;
            $crate::storage::sql::users::sql_users!($store, $db);
        }
        mod sessions {
            use super::*;
            $crate::storage::sql::sessions::sql_sessions!($store, $db);
        }
        mod clients {
            use super::*;
            $crate::storage::sql::clients::sql_clients!($store, $db);
        }
        mod factors {
            use super::*;
            $crate::storage::sql::factors::sql_factors!($store, $db);
        }
        mod grants {
            use super::*;
            $crate::storage::sql::grants::sql_grants!($store, $db);
        }
        mod signing_keys {
            use super::*;
            $crate::storage::sql::signing_keys::sql_signing_keys!($store, $db);
        }
        mod audit {
            use super::*;
            $crate::storage::sql::audit::sql_audit!($store, $db);
        }
        mod housekeeping {
            use super::*;
            $crate::storage::sql::housekeeping::sql_housekeeping!($store, $db, $backend);
        }
    };
}

/// Helpers shared by the aggregates, expanded in the backend's module (so `ts`, `from_ts`
/// and the pools are in scope).
macro_rules! sql_common {
    ($db:ty) => {
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::audit::AuditEvent;
        use crate::domain::refresh::FamilyId;
        use crate::domain::secret::TokenHash;
        use crate::domain::session::SessionId;
        use crate::domain::user::UserId;

        fn corrupt(what: &str) -> StoreError {
            StoreError::Database(sqlx::Error::Decode(format!("stored {what} is invalid").into()))
        }

        fn hash_of<K>(bytes: Vec<u8>) -> Result<TokenHash<K>, StoreError> {
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

        fn conflict_or(e: sqlx::Error, what: &'static str) -> StoreError {
            match e.as_database_error() {
                Some(db) if db.is_unique_violation() => StoreError::Conflict(what),
                _ => StoreError::Database(e),
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
    };
}

pub(crate) use {sql_common, sql_store};
