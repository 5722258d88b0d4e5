//! The SQL of `FactorStore`.
macro_rules! sql_factors {
    ($store:ident, $db:ty) => {
        use async_trait::async_trait;
        use uuid::Uuid;

        use crate::audit::AuditEvent;
        use crate::domain::user::UserId;
        use crate::storage::{
            Ceremony, FactorConfirmation, FactorKind, FactorRecord, FactorStore, PasskeyRecord,
            RecoveryCodes, StoreError,
        };

        #[derive(sqlx::FromRow)]
        struct FactorRow {
            factor_id: Uuid,
            user_id: Uuid,
            kind: String,
            name: String,
            encrypted_secret: Vec<u8>,
            confirmed: bool,
            last_used_step: Option<i64>,
            created_at: Ts,
            last_used_at: Option<Ts>,
        }

        impl FactorRow {
            fn into_record(self) -> Result<FactorRecord, StoreError> {
                Ok(FactorRecord {
                    id: self.factor_id,
                    user_id: UserId(self.user_id),
                    kind: FactorKind::parse(&self.kind).ok_or_else(|| corrupt("factor kind"))?,
                    name: self.name,
                    encrypted_secret: self.encrypted_secret,
                    confirmed: self.confirmed,
                    last_used_step: self.last_used_step.and_then(|s| u64::try_from(s).ok()),
                    created_at: from_ts(self.created_at),
                    last_used_at: self.last_used_at.map(from_ts),
                })
            }
        }

        #[derive(sqlx::FromRow)]
        struct PasskeyRow {
            #[sqlx(flatten)]
            factor: FactorRow,
            credential_id: Option<Vec<u8>>,
            credential: Option<String>,
        }

        impl PasskeyRow {
            fn into_record(self) -> Result<PasskeyRecord, StoreError> {
                Ok(PasskeyRecord {
                    factor: self.factor.into_record()?,
                    credential_id: self.credential_id.ok_or_else(|| corrupt("credential id"))?,
                    credential: self.credential.ok_or_else(|| corrupt("passkey credential"))?,
                })
            }
        }

        const PASSKEY_COLUMNS: &str = "factor_id, user_id, kind, name, encrypted_secret, \
             confirmed, last_used_step, created_at, last_used_at, credential_id, credential";

        fn step_param(step: u64) -> i64 {
            i64::try_from(step).unwrap_or(i64::MAX)
        }

        async fn insert_recovery_codes(
            conn: &mut <$db as sqlx::Database>::Connection,
            user: UserId,
            hashes: &[Vec<u8>],
            now: time::OffsetDateTime,
        ) -> Result<(), StoreError> {
            sqlx::query("delete from recovery_codes where user_id = $1")
                .bind(user.0)
                .execute(&mut *conn)
                .await?;
            for hash in hashes {
                sqlx::query(
                    "insert into recovery_codes (user_id, code_hash, created_at) \
                     values ($1, $2, $3)",
                )
                .bind(user.0)
                .bind(hash)
                .bind(ts(now))
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        #[async_trait]
        impl FactorStore for $store {
            async fn list_factors(&self, user: UserId) -> Result<Vec<FactorRecord>, StoreError> {
                let rows: Vec<FactorRow> = sqlx::query_as(
                    "select factor_id, user_id, kind, name, encrypted_secret, confirmed, \
                     last_used_step, created_at, last_used_at from user_factors \
                     where user_id = $1 order by created_at, factor_id",
                )
                .bind(user.0)
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(FactorRow::into_record).collect()
            }

            async fn insert_factor(
                &self,
                f: &FactorRecord,
                recovery_codes: Option<&[Vec<u8>]>,
                audit: Option<&AuditEvent>,
            ) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await?;
                if !f.confirmed {
                    sqlx::query(
                        "delete from user_factors where user_id = $1 and kind = $2 \
                         and confirmed = false",
                    )
                    .bind(f.user_id.0)
                    .bind(f.kind.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "insert into user_factors (factor_id, user_id, kind, name, \
                     encrypted_secret, confirmed, last_used_step, created_at, last_used_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(f.id)
                .bind(f.user_id.0)
                .bind(f.kind.as_str())
                .bind(&f.name)
                .bind(&f.encrypted_secret)
                .bind(f.confirmed)
                .bind(f.last_used_step.map(step_param))
                .bind(ts(f.created_at))
                .bind(f.last_used_at.map(ts))
                .execute(&mut *tx)
                .await?;
                if let Some(hashes) = recovery_codes {
                    insert_recovery_codes(&mut tx, f.user_id, hashes, f.created_at).await?;
                }
                if let Some(audit) = audit {
                    insert_audit(&mut *tx, audit).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn confirm_factor(
                &self,
                c: &FactorConfirmation<'_>,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                let changed = sqlx::query(
                    "update user_factors set confirmed = true, name = $3, \
                     last_used_step = $4, last_used_at = $5 \
                     where factor_id = $1 and user_id = $2 and confirmed = false \
                     and (last_used_step is null or last_used_step < $4)",
                )
                .bind(c.factor)
                .bind(c.user.0)
                .bind(c.name)
                .bind(step_param(c.step))
                .bind(ts(c.now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed != 1 {
                    return Ok(false);
                }
                if let Some(hashes) = c.recovery_codes {
                    insert_recovery_codes(&mut tx, c.user, hashes, c.now).await?;
                }
                insert_audit(&mut *tx, c.audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn use_totp_step(
                &self,
                factor: Uuid,
                step: u64,
                now: time::OffsetDateTime,
            ) -> Result<bool, StoreError> {
                // SECURITY: one conditional statement, so two requests with the same code
                // cannot both pass (RFC 6238 §5.2).
                let changed = sqlx::query(
                    "update user_factors set last_used_step = $2, last_used_at = $3 \
                     where factor_id = $1 and confirmed = true \
                     and (last_used_step is null or last_used_step < $2)",
                )
                .bind(factor)
                .bind(step_param(step))
                .bind(ts(now))
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(changed == 1)
            }

            async fn delete_factor(
                &self,
                user: UserId,
                factor: Uuid,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                let deleted = sqlx::query(
                    "delete from user_factors where factor_id = $1 and user_id = $2",
                )
                .bind(factor)
                .bind(user.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if deleted != 1 {
                    return Ok(false);
                }
                let left: i64 = sqlx::query_scalar(
                    "select count(*) from user_factors where user_id = $1 and confirmed = true",
                )
                .bind(user.0)
                .fetch_one(&mut *tx)
                .await?;
                if left == 0 {
                    sqlx::query("delete from recovery_codes where user_id = $1")
                        .bind(user.0)
                        .execute(&mut *tx)
                        .await?;
                }
                insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn delete_factors(
                &self,
                user: UserId,
                audit: &AuditEvent,
            ) -> Result<u64, StoreError> {
                let mut tx = self.writer().begin().await?;
                let deleted = sqlx::query("delete from user_factors where user_id = $1")
                    .bind(user.0)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("delete from recovery_codes where user_id = $1")
                    .bind(user.0)
                    .execute(&mut *tx)
                    .await?;
                let mut audit = audit.clone();
                if let serde_json::Value::Object(map) = &mut audit.details {
                    map.insert("removed".into(), deleted.into());
                }
                insert_audit(&mut *tx, &audit).await?;
                tx.commit().await?;
                Ok(deleted)
            }

            async fn replace_recovery_codes(
                &self,
                user: UserId,
                hashes: &[Vec<u8>],
                now: time::OffsetDateTime,
                audit: &AuditEvent,
            ) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await?;
                insert_recovery_codes(&mut tx, user, hashes, now).await?;
                insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn use_recovery_code(
                &self,
                user: UserId,
                hash: &[u8],
                now: time::OffsetDateTime,
                audit: Option<&AuditEvent>,
            ) -> Result<Option<u32>, StoreError> {
                let mut tx = self.writer().begin().await?;
                // SECURITY: one conditional statement: a code is spent once, even by two
                // requests at the same time.
                let changed = sqlx::query(
                    "update recovery_codes set used_at = $3 \
                     where user_id = $1 and code_hash = $2 and used_at is null",
                )
                .bind(user.0)
                .bind(hash)
                .bind(ts(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed != 1 {
                    return Ok(None);
                }
                let remaining: i64 = sqlx::query_scalar(
                    "select count(*) from recovery_codes where user_id = $1 and used_at is null",
                )
                .bind(user.0)
                .fetch_one(&mut *tx)
                .await?;
                let remaining = u32::try_from(remaining).unwrap_or(0);
                if let Some(audit) = audit {
                    let mut audit = audit.clone();
                    if let serde_json::Value::Object(map) = &mut audit.details {
                        map.insert("remaining".into(), remaining.into());
                    }
                    insert_audit(&mut *tx, &audit).await?;
                }
                tx.commit().await?;
                Ok(Some(remaining))
            }

            async fn recovery_codes(&self, user: UserId) -> Result<RecoveryCodes, StoreError> {
                let (remaining, last_used_at): (i64, Option<Ts>) = sqlx::query_as(
                    "select count(*) filter (where used_at is null), max(used_at) \
                     from recovery_codes where user_id = $1",
                )
                .bind(user.0)
                .fetch_one(self.reader())
                .await?;
                Ok(RecoveryCodes {
                    remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                    last_used_at: last_used_at.map(from_ts),
                })
            }

            async fn list_factor_secrets(&self) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError> {
                Ok(sqlx::query_as(
                    "select factor_id, encrypted_secret from user_factors \
                     where kind <> 'passkey' order by factor_id",
                )
                .fetch_all(self.reader())
                .await?)
            }

            async fn insert_passkey(
                &self,
                p: &PasskeyRecord,
                recovery_codes: Option<&[Vec<u8>]>,
                audit: &AuditEvent,
            ) -> Result<(), StoreError> {
                let f = &p.factor;
                let mut tx = self.writer().begin().await?;
                let taken: Option<Uuid> = sqlx::query_scalar(
                    "select factor_id from user_factors where credential_id = $1",
                )
                .bind(&p.credential_id)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_some() {
                    return Err(StoreError::Conflict("this passkey"));
                }
                sqlx::query(
                    "insert into user_factors (factor_id, user_id, kind, name, \
                     encrypted_secret, confirmed, last_used_step, created_at, last_used_at, \
                     credential_id, credential) \
                     values ($1, $2, $3, $4, $5, $6, null, $7, $8, $9, $10)",
                )
                .bind(f.id)
                .bind(f.user_id.0)
                .bind(FactorKind::Passkey.as_str())
                .bind(&f.name)
                .bind(&f.encrypted_secret)
                .bind(f.confirmed)
                .bind(ts(f.created_at))
                .bind(f.last_used_at.map(ts))
                .bind(&p.credential_id)
                .bind(&p.credential)
                .execute(&mut *tx)
                .await?;
                if let Some(hashes) = recovery_codes {
                    insert_recovery_codes(&mut tx, f.user_id, hashes, f.created_at).await?;
                }
                insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_passkeys(
                &self,
                user: UserId,
            ) -> Result<Vec<PasskeyRecord>, StoreError> {
                let rows: Vec<PasskeyRow> = sqlx::query_as(&format!(
                    "select {PASSKEY_COLUMNS} from user_factors \
                     where user_id = $1 and kind = 'passkey' and confirmed = true \
                     order by created_at, factor_id"
                ))
                .bind(user.0)
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(PasskeyRow::into_record).collect()
            }

            async fn find_passkey(
                &self,
                credential_id: &[u8],
            ) -> Result<Option<PasskeyRecord>, StoreError> {
                let row: Option<PasskeyRow> = sqlx::query_as(&format!(
                    "select {PASSKEY_COLUMNS} from user_factors \
                     where credential_id = $1 and kind = 'passkey' and confirmed = true"
                ))
                .bind(credential_id)
                .fetch_optional(self.reader())
                .await?;
                row.map(PasskeyRow::into_record).transpose()
            }

            async fn use_passkey(
                &self,
                factor: Uuid,
                credential: Option<&str>,
                now: time::OffsetDateTime,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "update user_factors set last_used_at = $2, \
                     credential = coalesce($3, credential) \
                     where factor_id = $1 and kind = 'passkey'",
                )
                .bind(factor)
                .bind(ts(now))
                .bind(credential)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn rename_factor(
                &self,
                user: UserId,
                factor: Uuid,
                name: &str,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await?;
                let changed = sqlx::query(
                    "update user_factors set name = $3 \
                     where factor_id = $1 and user_id = $2 and confirmed = true",
                )
                .bind(factor)
                .bind(user.0)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed != 1 {
                    return Ok(false);
                }
                insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn put_ceremony(&self, c: &Ceremony) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await?;
                sqlx::query("delete from passkey_ceremonies where owner = $1")
                    .bind(&c.owner)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "insert into passkey_ceremonies (owner, user_id, state, expires_at) \
                     values ($1, $2, $3, $4)",
                )
                .bind(&c.owner)
                .bind(c.user.map(|u| u.0))
                .bind(&c.state)
                .bind(ts(c.expires_at))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn take_ceremony(
                &self,
                owner: &str,
                now: time::OffsetDateTime,
            ) -> Result<Option<Ceremony>, StoreError> {
                // SECURITY: one statement takes the row, so a state serves one response
                // even when two arrive at two instances at once.
                let row: Option<(String, Option<Uuid>, String, Ts)> = sqlx::query_as(
                    "delete from passkey_ceremonies where owner = $1 \
                     returning owner, user_id, state, expires_at",
                )
                .bind(owner)
                .fetch_optional(self.writer())
                .await?;
                Ok(row.and_then(|(owner, user, state, expires_at)| {
                    let expires_at = from_ts(expires_at);
                    (expires_at > now).then(|| Ceremony {
                        owner,
                        user: user.map(UserId),
                        state,
                        expires_at,
                    })
                }))
            }
        }
    };
}

pub(crate) use sql_factors;
