//! The SQL of `HousekeepingStore`: health, migrations, table sizes, purging.
macro_rules! sql_housekeeping {
    ($store:ident, $db:ty, $backend:expr) => {
        use async_trait::async_trait;

        use crate::storage::{Backend, HousekeepingStore, PurgeCutoffs, StoreError};

        /// Refresh families past their absolute limit ($2) or revoked before the retention
        /// cutoff ($3).
        const ENDED_FAMILIES: &str = "select family_id from refresh_families \
             where absolute_expires_at <= $2 or revoked_at <= $3";

        #[async_trait]
        impl HousekeepingStore for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            async fn migrate(&self) -> Result<(), StoreError> {
                MIGRATOR.run(self.writer()).await?;
                Ok(())
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
                let has_table: bool = sqlx::query_scalar(HAS_MIGRATIONS_TABLE)
                    .fetch_one(self.reader())
                    .await?;
                let applied: Vec<i64> = if has_table {
                    sqlx::query_scalar("select version from _sqlx_migrations where success")
                        .fetch_all(self.reader())
                        .await?
                } else {
                    Vec::new()
                };
                // The versions of the (up) migrations missing from `applied`.
                Ok(MIGRATOR
                    .iter()
                    .filter(|m| {
                        !m.migration_type.is_down_migration() && !applied.contains(&m.version)
                    })
                    .map(|m| m.version)
                    .collect())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("select 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn close(&self) {
                self.close_pools().await;
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
                // (table, key, the rows that go: a query over $2…, the instants bound
                // there). Each pass deletes at most `batch` ($1) rows per table.
                let mut purges: Vec<(&str, &str, &str, Vec<OffsetDateTime>)> = vec![
                    (
                        "login_transactions",
                        "id_hash",
                        "select id_hash from login_transactions where expires_at <= $2",
                        vec![c.now],
                    ),
                    (
                        "browser_sessions",
                        "session_id",
                        "select session_id from browser_sessions \
                         where revoked_at <= $2 or (revoked_at is null \
                         and (absolute_expires_at <= $2 or idle_expires_at <= $2))",
                        vec![c.ended_before],
                    ),
                    (
                        "authorization_codes",
                        "code_hash",
                        "select code_hash from authorization_codes \
                         where expires_at <= $2 and (access_token_expires_at is null \
                         or access_token_expires_at <= $2)",
                        vec![c.now],
                    ),
                    // Families past their absolute limit, or revoked before the retention
                    // cutoff, go with their tokens (on delete cascade). Rotated tokens stay
                    // with their family so a late replay is still detected as reuse.
                    (
                        "refresh_tokens",
                        "family_id",
                        ENDED_FAMILIES,
                        vec![c.now, c.ended_before],
                    ),
                    (
                        "refresh_families",
                        "family_id",
                        ENDED_FAMILIES,
                        vec![c.now, c.ended_before],
                    ),
                    (
                        "revoked_access_tokens",
                        "jti",
                        "select jti from revoked_access_tokens where expires_at <= $2",
                        vec![c.now],
                    ),
                    // A row whose failures and lock both ended before the window counts for
                    // nothing any more (the next failure would restart at 1).
                    (
                        "login_throttles",
                        "throttle_key",
                        "select throttle_key from login_throttles where last_failure_at < $2 \
                         and (locked_until is null or locked_until < $2)",
                        vec![c.throttle_before],
                    ),
                    // Passkey ceremonies never finished.
                    (
                        "passkey_ceremonies",
                        "owner",
                        "select owner from passkey_ceremonies where expires_at <= $2",
                        vec![c.now],
                    ),
                    // Leases lost with a crashed or cancelled sign-in.
                    (
                        "login_attempt_leases",
                        "lease_id",
                        "select lease_id from login_attempt_leases where expires_at < $2",
                        vec![c.now],
                    ),
                ];
                if let Some(before) = c.audit_before {
                    purges.push((
                        "audit_events",
                        "audit_event_id",
                        "select audit_event_id from audit_events where at < $2",
                        vec![before],
                    ));
                }
                let mut purged = 0;
                for (table, key, rows, instants) in purges {
                    // The names and queries are the constants above, never input.
                    let statement =
                        format!("delete from {table} where {key} in ({rows} limit $1)");
                    let mut query = sqlx::query(&statement).bind(i64::from(batch));
                    for instant in instants {
                        query = query.bind(ts(instant));
                    }
                    purged += query.execute(self.writer()).await?.rows_affected();
                }
                // The retry window's sealed responses are wiped once it has passed.
                sqlx::query(
                    "update refresh_tokens set successor_response = null, successor_until = null \
                     where token_hash in (select token_hash from refresh_tokens \
                     where successor_response is not null and successor_until <= $1 limit $2)",
                )
                .bind(ts(c.now))
                .bind(i64::from(batch))
                .execute(self.writer())
                .await?;
                Ok(purged)
            }
        }

    };
}

pub(crate) use sql_housekeeping;
