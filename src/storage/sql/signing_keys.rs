//! The SQL of `SigningKeyStore`.
macro_rules! sql_signing_keys {
    ($store:ident, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::types::Json;

        use crate::audit::AuditEvent;
        use crate::domain::signing_key::{KeyState, Stored};
        use crate::storage::{
            KeyRetirement, ReencryptedKey, Retired, SigningKeyRecord, SigningKeyStore, StoreError,
        };

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

        /// Inserts a key as `current` (a conflict is an error: the algorithm has one) or as
        /// `next` (skipped when the algorithm already has one); true when inserted.
        async fn insert_key<'c, E>(
            executor: E,
            k: &SigningKeyRecord,
            state: KeyState,
            activated_at: Option<time::OffsetDateTime>,
        ) -> Result<bool, StoreError>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let skip = if state == KeyState::Next { " on conflict do nothing" } else { "" };
            Ok(sqlx::query(&format!(
                "insert into signing_keys (kid, alg, state, encrypted_private_key, \
                 public_jwk, created_at, activated_at, retired_at, remove_after) \
                 values ($1, $2, $3, $4, $5, $6, $7, null, null){skip}"
            ))
            .bind(&k.kid)
            .bind(k.alg.as_str())
            .bind(state.as_str())
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

        #[async_trait]
        impl SigningKeyStore for $store {
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
                        alg: Stored::parse(&r.alg),
                        state: Stored::parse(&r.state),
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
                .bind(k.alg.as_str())
                .bind(k.state.as_str())
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
                let Some((stored_state, alg, stored_private_key)) = found else {
                    return Ok(if r.only_if_current {
                        Retired::LostRace
                    } else {
                        Retired::NotFound
                    });
                };
                let previous_state = Stored::<KeyState>::parse(&stored_state);
                let was_current = previous_state == KeyState::Current;
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
                            insert_key(&mut *tx, k, KeyState::Current, Some(r.now)).await?;
                            promoted = Some(k.kid.clone());
                        }
                    }
                    if let Some(k) = fresh.next() {
                        if insert_key(&mut *tx, k, KeyState::Next, None).await? {
                            next = Some(k.kid.clone());
                        }
                    }
                } else if previous_state == KeyState::Next {
                    // A compromised next key is replaced at once: the algorithm keeps a
                    // pre-published successor for its next rotation.
                    if let Some(k) = r.fresh.first() {
                        if insert_key(&mut *tx, k, KeyState::Next, None).await? {
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
                    map.insert("previous_state".into(), previous_state.as_str().into());
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
                secrets: &[crate::storage::ReencryptedSecret],
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
                let mut sealed: Vec<uuid::Uuid> = sqlx::query_scalar(&format!(
                    "select factor_id from user_factors where kind <> 'passkey' \
                     order by factor_id{LOCK_ROW}"
                ))
                .fetch_all(&mut *tx)
                .await?;
                let mut given: Vec<uuid::Uuid> = secrets.iter().map(|s| s.factor).collect();
                given.sort_unstable();
                sealed.sort_unstable();
                if sealed != given {
                    return Err(StoreError::Conflict("a second factor enrolled or removed meanwhile"));
                }
                for s in secrets {
                    let changed = sqlx::query(
                        "update user_factors set encrypted_secret = $3 \
                         where factor_id = $1 and encrypted_secret = $2",
                    )
                    .bind(s.factor)
                    .bind(&s.old)
                    .bind(&s.new)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if changed != 1 {
                        return Err(StoreError::Conflict("a second factor changed meanwhile"));
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
        }

    };
}

pub(crate) use sql_signing_keys;
