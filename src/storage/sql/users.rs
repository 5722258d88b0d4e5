//! The SQL of `UserStore`.
macro_rules! sql_users {
    ($store:ident, $db:ty) => {
        use async_trait::async_trait;
        use uuid::Uuid;

        use crate::audit::AuditEvent;
        use crate::domain::user::{NewUser, PasswordHash, User, UserId, UserProfile, Username};
        use crate::storage::{PasswordChange, StoreError, UserStore};

        const USER_COLUMNS: &str = "user_id, username, email, email_verified, name, \
             password_hash, disabled, created_at, updated_at";

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

        #[async_trait]
        impl UserStore for $store {
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

    };
}

pub(crate) use sql_users;
