//! The SQL of `GrantStore`: codes, the access-token denylist, refresh-token families.
//! Single-use artifacts are consumed with one conditional `update … returning`, never
//! read-then-write, so two concurrent uses cannot both win.
macro_rules! sql_grants {
    ($store:ident, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::types::Json;
        use uuid::Uuid;

        use super::sessions::find_transaction;
        use crate::audit::AuditEvent;
        use crate::domain::claims::RequestedClaims;
        use crate::domain::client::ClientId;
        use crate::domain::pkce::CodeChallenge;
        use crate::domain::refresh::FamilyId;
        use crate::domain::scope::ScopeSet;
        use crate::domain::secret::{TokenHash, kind};
        use crate::domain::session::{BrowserSession, SessionId};
        use crate::domain::user::UserId;
        use crate::storage::{
            AuthorizationCodeRecord, CodeRedemption, GrantStore, IssueCode, LoginTransaction,
            Redemption, RefreshRotation, RefreshTokenRecord, StoreError,
        };

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
                    // "" in the column means none (no migration for the Option).
                    code_challenge: Some(self.code_challenge)
                        .filter(|c| !c.is_empty())
                        .map(CodeChallenge::from_trusted),
                    auth_time: from_ts(self.auth_time),
                    amr: self.amr.0,
                    claims: self.claims.map(|c| c.0).unwrap_or_default(),
                    created_at: from_ts(self.created_at),
                    expires_at: from_ts(self.expires_at),
                })
            }
        }

        /// The `code_challenge` column: "" for none (RFC 9700 §4.8.2: a code issued without
        /// a challenge is never redeemed with a verifier, and one issued with a challenge
        /// never without).
        fn challenge_column(challenge: Option<&CodeChallenge>) -> &str {
            challenge.map_or("", CodeChallenge::as_str)
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
            /// The family's browser session, unless revoked or deleted (a left join).
            #[sqlx(flatten)]
            session: JoinedSessionRow,
            disabled: bool,
        }

        /// `SESSION_COLUMNS` of a left-joined session, prefixed `s_`: all null without one.
        #[derive(sqlx::FromRow)]
        struct JoinedSessionRow {
            s_session_id: Option<Uuid>,
            s_user_id: Option<Uuid>,
            s_auth_time: Option<Ts>,
            s_amr: Option<Json<Vec<String>>>,
            s_factors: Option<Json<crate::domain::mfa::SessionFactors>>,
            s_created_at: Option<Ts>,
            s_last_seen_at: Option<Ts>,
            s_idle_expires_at: Option<Ts>,
            s_absolute_expires_at: Option<Ts>,
            s_ip: Option<String>,
            s_user_agent: Option<String>,
        }

        impl JoinedSessionRow {
            fn into_session(self) -> Result<Option<BrowserSession>, StoreError> {
                let Some(id) = self.s_session_id else {
                    return Ok(None);
                };
                let ts_of = |t: Option<Ts>| t.map(from_ts).ok_or_else(|| corrupt("session"));
                Ok(Some(BrowserSession {
                    id: SessionId(id),
                    user_id: UserId(self.s_user_id.ok_or_else(|| corrupt("session"))?),
                    auth_time: ts_of(self.s_auth_time)?,
                    amr: self.s_amr.map(|a| a.0).unwrap_or_default(),
                    factors: self.s_factors.map(|f| f.0).unwrap_or_default(),
                    created_at: ts_of(self.s_created_at)?,
                    last_seen_at: ts_of(self.s_last_seen_at)?,
                    idle_expires_at: ts_of(self.s_idle_expires_at)?,
                    absolute_expires_at: ts_of(self.s_absolute_expires_at)?,
                    ip: self.s_ip,
                    user_agent: self.s_user_agent,
                }))
            }
        }

        impl RefreshRow {
            fn into_record(self) -> Result<RefreshTokenRecord, StoreError> {
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
                    session: self.session.into_session()?,
                    user_disabled: self.disabled,
                })
            }
        }

        #[async_trait]
        impl GrantStore for $store {
            async fn find_pending_authorization(
                &self,
                id_hash: &TokenHash<kind::LoginTransaction>,
                now: OffsetDateTime,
            ) -> Result<Option<LoginTransaction>, StoreError> {
                find_transaction(
                    self.reader(),
                    "request is not null and completed_at is null",
                    id_hash,
                    now,
                )
                .await
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
                .bind(challenge_column(c.code_challenge.as_ref()))
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
                transaction: &TokenHash<kind::LoginTransaction>,
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
                // One statement enforces the grant's `CodeBinding` with "unused and
                // unexpired" (RFC 6749 §4.1.3, RFC 7636 §4.6). A mismatch does not burn
                // the code. A code issued without a challenge stores "", which no
                // verifier's challenge equals.
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
                .bind(r.binding.client_id.as_str())
                .bind(r.binding.redirect_uri)
                .bind(challenge_column(r.binding.code_challenge))
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
                        // The grant's rule (OpenID Connect Core §11), applied to the scope
                        // of the code just consumed, in this transaction.
                        let scope = ScopeSet::parse(&row.scope).map_err(|_| corrupt("scope"))?;
                        let offline = (family.outlives_session)(&scope);
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
                hash: &TokenHash<kind::RefreshToken>,
            ) -> Result<Option<RefreshTokenRecord>, StoreError> {
                let row: Option<RefreshRow> = sqlx::query_as(
                    "select t.token_hash, t.family_id, f.client_id, f.user_id, f.session_id, \
                     f.scope, f.auth_time, f.amr, f.claims, t.issued_at, t.idle_expires_at, \
                     f.absolute_expires_at, t.rotated_at, f.revoked_at as family_revoked_at, \
                     t.successor_response, t.successor_until, \
                     s.session_id as s_session_id, s.user_id as s_user_id, \
                     s.auth_time as s_auth_time, s.amr as s_amr, s.factors as s_factors, s.created_at as s_created_at, \
                     s.last_seen_at as s_last_seen_at, s.idle_expires_at as s_idle_expires_at, \
                     s.absolute_expires_at as s_absolute_expires_at, s.ip as s_ip, \
                     s.user_agent as s_user_agent, u.disabled \
                     from refresh_tokens t \
                     join refresh_families f on f.family_id = t.family_id \
                     join users u on u.user_id = f.user_id \
                     left join browser_sessions s on s.session_id = f.session_id \
                     and s.revoked_at is null \
                     where t.token_hash = $1",
                )
                .bind(hash.as_bytes())
                .fetch_optional(self.reader())
                .await?;
                row.map(RefreshRow::into_record).transpose()
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
        }

        #[allow(clippy::too_many_arguments)]
        async fn insert_refresh_token(
            conn: &mut <$db as sqlx::Database>::Connection,
            hash: &TokenHash<kind::RefreshToken>,
            family: FamilyId,
            parent: Option<&TokenHash<kind::RefreshToken>>,
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

pub(crate) use sql_grants;
