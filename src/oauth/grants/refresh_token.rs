//! The `refresh_token` grant (RFC 6749 §6) with rotation and reuse detection
//! (RFC 9700 §4.14.2): every refresh returns a new refresh token and retires the
//! presented one; presenting a retired token again revokes the whole family.
//!
//! The idempotent retry window: a second presentation of a just-rotated token by the same
//! client within `tokens.refresh_token_retry_window` gets back the very response the first
//! presentation got (sealed under the master key, wiped when the window ends), so a lost
//! response or two tabs do not log the user out. Any later presentation, or of an older
//! token, is reuse.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Mint;
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::Client;
use crate::domain::client::TokenDelivery;
use crate::domain::scope::ScopeSet;
use crate::domain::secret::OpaqueToken;
use crate::domain::session::SessionId;
use crate::domain::user::User;
use crate::oauth::Provider;
use crate::oauth::error::{EndpointError, ErrorCode, OAuthError};
use crate::oauth::token::{Issued, TokenRequest, TokenResponse};
use crate::storage::{RefreshRotation, RefreshTokenRecord};

/// What the retry window keeps (sealed) of a rotation.
#[derive(Serialize, Deserialize)]
struct Sealed {
    response: TokenResponse,
    refresh_expires_at: i64,
    /// The `scope` parameter of the request that rotated the token: a retry must be the
    /// same request.
    requested_scope: Option<String>,
}

/// Binds a sealed response to its purpose and to the row it is stored in.
fn sealing_aad(token_hash: &[u8]) -> Vec<u8> {
    [b"portcullis/refresh-retry/v1:".as_slice(), token_hash].concat()
}

/// How many times a lost rotation race is re-examined; the second look always sees the
/// winner's committed rotation.
const ATTEMPTS: usize = 3;

/// The refusal of a token that is unknown, expired, or not this client's: the client
/// cannot tell which.
fn invalid_token() -> OAuthError {
    OAuthError::invalid_grant("the refresh token is invalid or expired")
}

/// The presented refresh token: in the body (RFC 6749 §6), or, for a client that
/// receives its refresh tokens in a cookie, only there (OAuth 2.0 for Browser-Based Apps
/// §6.1).
fn presented_refresh_token<'a>(
    client: &Client,
    request: &'a TokenRequest<'_>,
) -> Result<&'a str, OAuthError> {
    let body = request
        .params
        .get("refresh_token")
        .map(String::as_str)
        .filter(|v| !v.is_empty());
    match (client.refresh_token_delivery, body) {
        (TokenDelivery::Body, Some(token)) => Ok(token),
        (TokenDelivery::Body, None) => {
            Err(OAuthError::invalid_request("refresh_token is required"))
        }
        (TokenDelivery::Cookie, Some(_)) => Err(OAuthError::invalid_request(
            "this client receives its refresh tokens in a cookie; send none in the body",
        )),
        // The request's Origin was checked against the client's in `Provider::token`.
        (TokenDelivery::Cookie, None) => request
            .refresh_cookie
            .ok_or_else(|| OAuthError::invalid_grant("no refresh token cookie; sign in again")),
    }
}

/// RFC 6749 §6: the optional `scope` parameter, syntactically valid.
fn requested_scope(request: &TokenRequest<'_>) -> Result<Option<ScopeSet>, OAuthError> {
    match request.params.get("scope").filter(|v| !v.is_empty()) {
        Some(raw) => ScopeSet::parse(raw)
            .map(Some)
            .map_err(|_| OAuthError::new(ErrorCode::InvalidScope, "scope is malformed")),
        None => Ok(None),
    }
}

/// RFC 6749 §6: the scope may be narrowed, never widened; the family keeps its original
/// scope, so a later refresh may ask for all of it again. A scope the client has lost
/// since is refused.
fn granted_scope(
    requested: Option<&ScopeSet>,
    record: &RefreshTokenRecord,
    client: &Client,
) -> Result<ScopeSet, OAuthError> {
    let scope = match requested {
        Some(s) if !s.is_subset(&record.scope) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "a refresh cannot add scopes the user did not grant",
            ));
        }
        Some(s) if !s.is_empty() => s.clone(),
        _ => record.scope.clone(),
    };
    if !scope.is_subset(&client.scopes) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "the client is no longer allowed some of these scopes",
        ));
    }
    Ok(scope)
}

/// An unrotated token of a live family may be used while it, its user and (for a
/// session-bound family, OpenID Connect Core §11) its browser session are live.
fn check_token_usable(record: &RefreshTokenRecord, now: OffsetDateTime) -> Result<(), OAuthError> {
    if record.idle_expires_at <= now || record.absolute_expires_at <= now {
        return Err(invalid_token());
    }
    if record.user_disabled {
        return Err(OAuthError::invalid_grant("the user is no longer active"));
    }
    if record.session_id.is_some() && !record.session_live(now) {
        return Err(OAuthError::invalid_grant(
            "the browser session this refresh token belonged to has ended; sign in again",
        ));
    }
    Ok(())
}

impl Provider {
    pub(crate) async fn refresh_token_grant(
        &self,
        client: &Client,
        request: &TokenRequest<'_>,
        actor: &Actor,
    ) -> Result<Issued, EndpointError> {
        let presented = presented_refresh_token(client, request)?;
        let requested = requested_scope(request)?;
        let hash = OpaqueToken::parse(presented)
            .ok_or_else(invalid_token)?
            .hash();
        for _ in 0..ATTEMPTS {
            let now = self.clock.now();
            let Some(record) = self.store.find_refresh_token(&hash).await? else {
                return Err(invalid_token().into());
            };
            if let Some(issued) = self
                .refresh_once(client, &record, requested.as_ref(), actor, now)
                .await?
            {
                return Ok(issued);
            }
            // Another presentation of the same token won the race: look again, and this
            // one is a retry or a replay.
        }
        Err(invalid_token().into())
    }

    /// The rules in order, then one attempt at the rotation: none when another
    /// presentation of the token rotated it first.
    async fn refresh_once(
        &self,
        client: &Client,
        record: &RefreshTokenRecord,
        requested: Option<&ScopeSet>,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Option<Issued>, EndpointError> {
        // RFC 6749 §6: the token is bound to the client it was issued to.
        if record.client_id != client.id {
            self.deny(record, client, actor, now, "issued to another client")
                .await?;
            return Err(invalid_token().into());
        }
        // Checks that depend only on the request come before the token's state, so they
        // answer the same whether or not the token was rotated: a stolen token cannot be
        // probed for its state with a request that is bound to fail.
        let scope = granted_scope(requested, record, client)?;
        // RFC 9700 §4.14.2: a rotated token presented again is a retry or a replay.
        if record.family_revoked || record.rotated_at.is_some() {
            return self
                .replayed(record, client, requested, actor, now)
                .await
                .map(Some);
        }
        check_token_usable(record, now)?;
        let user = self.active_user(record.user_id).await?;
        self.rotate(client, record, &user, &scope, requested, actor, now)
            .await
    }

    /// RFC 9700 §4.14.2 rotation: new tokens, the presented one retired, in one
    /// conditional write; false from storage when another presentation won.
    #[expect(clippy::too_many_arguments, reason = "the steps of one rotation")]
    async fn rotate(
        &self,
        client: &Client,
        record: &RefreshTokenRecord,
        user: &User,
        scope: &ScopeSet,
        requested: Option<&ScopeSet>,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Option<Issued>, EndpointError> {
        let jti = Uuid::new_v4();
        // OpenID Connect Core §12.2: a refreshed ID token keeps iss, sub, aud, azp and
        // the original auth_time; iat is new; no nonce.
        let (access_token, id_token) = self.mint(&Mint {
            client,
            user,
            scope,
            session: record.session_id,
            auth_time: record.auth_time,
            amr: &record.amr,
            nonce: None,
            claims: &record.claims,
            jti,
            now,
        })?;
        let successor = OpaqueToken::generate();
        let response = TokenResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in: self.access_token_lifetime.whole_seconds(),
            scope: scope.to_string(),
            refresh_token: Some(successor.expose().to_owned()),
            id_token,
        };
        let audit = rotation_audit(record, client, actor, now, jti, scope);
        let rotated = self
            .store
            .rotate_refresh_token(
                &RefreshRotation {
                    presented: record.token_hash,
                    family_id: record.family_id,
                    successor: successor.hash(),
                    successor_idle_expires_at: self.refresh.successor_idle_expiry(
                        client.kind,
                        now,
                        record.absolute_expires_at,
                    ),
                    access_token_jti: jti,
                    access_token_expires_at: now + self.access_token_lifetime,
                    sealed_response: self.seal_for_retry(&response, record, requested, now)?,
                    touch_session: self.session_touch(record, now),
                    audit: &audit,
                },
                now,
            )
            .await?;
        Ok(rotated.then(|| Issued {
            response,
            client_id: client.id.clone(),
            delivery: client.refresh_token_delivery,
            refresh_expires_at: Some(record.absolute_expires_at),
        }))
    }

    /// The response sealed under the master key for the idempotent retry window, and
    /// when the window ends; none when the window is off.
    fn seal_for_retry(
        &self,
        response: &TokenResponse,
        record: &RefreshTokenRecord,
        requested: Option<&ScopeSet>,
        now: OffsetDateTime,
    ) -> Result<Option<(Vec<u8>, OffsetDateTime)>, EndpointError> {
        if !self.refresh.retry_window.is_positive() {
            return Ok(None);
        }
        let sealed = serde_json::to_vec(&Sealed {
            response: response.clone(),
            refresh_expires_at: record.absolute_expires_at.unix_timestamp(),
            requested_scope: requested.map(ScopeSet::to_string),
        })
        .map_err(|e| EndpointError::Internal(e.to_string()))?;
        Ok(Some((
            self.keys
                .seal(&sealed, &sealing_aad(record.token_hash.as_bytes()))?,
            now + self.refresh.retry_window,
        )))
    }

    /// A session-bound refresh is activity of its browser session, under the session
    /// policy the pages follow: the idle expiry moves
    /// (`SessionPolicy::idle_expiry_after_activity`), written at most once per touch
    /// interval (`SessionPolicy::needs_touch`). Storage locks the session and checks it
    /// is live either way.
    fn session_touch(
        &self,
        record: &RefreshTokenRecord,
        now: OffsetDateTime,
    ) -> Option<(SessionId, Option<OffsetDateTime>)> {
        let policy = &self.auth.sessions;
        let idle = record
            .session
            .as_ref()
            .filter(|session| policy.needs_touch(session, now))
            .map(|session| policy.idle_expiry_after_activity(now, session.absolute_expires_at));
        record.session_id.map(|sid| (sid, idle))
    }

    /// A rotated token, or one of a revoked family, presented again.
    async fn replayed(
        &self,
        record: &RefreshTokenRecord,
        client: &Client,
        requested: Option<&ScopeSet>,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Issued, EndpointError> {
        match self.sealed_retry(record, requested, now)? {
            Some(sealed) => self.answer_retry(sealed, record, client, actor, now).await,
            None => self.revoke_for_reuse(record, client, actor, now).await,
        }
    }

    /// The response sealed at rotation, when the rotated token comes back inside the retry
    /// window with the very same request: only that is a retry; anything else with a
    /// rotated token is reuse (`None`).
    fn sealed_retry(
        &self,
        record: &RefreshTokenRecord,
        requested: Option<&ScopeSet>,
        now: OffsetDateTime,
    ) -> Result<Option<Sealed>, EndpointError> {
        let in_window = !record.family_revoked
            && record
                .successor_until
                .is_some_and(|until| self.refresh.is_retry(until, now));
        let (true, Some(blob)) = (in_window, &record.successor_response) else {
            return Ok(None);
        };
        let opened = self
            .keys
            .open(blob, &sealing_aad(record.token_hash.as_bytes()))
            .map_err(|e| e.to_string())
            .and_then(|plain| serde_json::from_slice::<Sealed>(&plain).map_err(|e| e.to_string()));
        match opened {
            Ok(sealed) if sealed.requested_scope == requested.map(ScopeSet::to_string) => {
                Ok(Some(sealed))
            }
            Ok(_) => Ok(None),
            Err(error) => {
                // E.g. the master key was rotated inside the window: refuse this retry
                // without treating it as an attack.
                tracing::warn!(%error, "a sealed refresh response could not be opened");
                Err(OAuthError::invalid_grant(
                    "the refresh token was already used; retry with the newest one",
                )
                .into())
            }
        }
    }

    /// The retry's answer: the response the rotation gave, again.
    async fn answer_retry(
        &self,
        sealed: Sealed,
        record: &RefreshTokenRecord,
        client: &Client,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Issued, EndpointError> {
        let audit = AuditEvent::new(now, AuditKind::RefreshRotated, Outcome::Success, actor)
            .client(client.id.as_str())
            .user(record.user_id)
            .detail("family", record.family_id.to_string())
            .detail("retry", true);
        self.store.record_audit(&[audit]).await?;
        Ok(Issued {
            response: sealed.response,
            client_id: client.id.clone(),
            delivery: client.refresh_token_delivery,
            refresh_expires_at: OffsetDateTime::from_unix_timestamp(sealed.refresh_expires_at).ok(),
        })
    }

    /// RFC 9700 §4.14.2: the server cannot tell the legitimate client from an attacker,
    /// so the whole family goes, its newest token and its access tokens included.
    async fn revoke_for_reuse(
        &self,
        record: &RefreshTokenRecord,
        client: &Client,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Issued, EndpointError> {
        let audit = AuditEvent::new(
            now,
            AuditKind::RefreshReuseDetected,
            Outcome::Failure,
            actor,
        )
        .client(client.id.as_str())
        .user(record.user_id)
        .detail("family", record.family_id.to_string())
        .detail(
            "action",
            if record.family_revoked {
                "family already revoked"
            } else {
                "revoked the family"
            },
        );
        self.store
            .revoke_refresh_family(record.family_id, now, "reuse_detected", &audit)
            .await?;
        Err(OAuthError::invalid_grant(
            "the refresh token was already used or revoked; every token of this sign-in is revoked",
        )
        .into())
    }

    async fn deny(
        &self,
        record: &RefreshTokenRecord,
        client: &Client,
        actor: &Actor,
        now: OffsetDateTime,
        reason: &str,
    ) -> Result<(), EndpointError> {
        let audit = AuditEvent::new(now, AuditKind::TokenDenied, Outcome::Failure, actor)
            .client(client.id.as_str())
            .user(record.user_id)
            .detail("grant_type", "refresh_token")
            .detail("reason", reason);
        self.store.record_audit(&[audit]).await?;
        Ok(())
    }
}

/// The audit row of a rotation.
fn rotation_audit(
    record: &RefreshTokenRecord,
    client: &Client,
    actor: &Actor,
    now: OffsetDateTime,
    jti: Uuid,
    scope: &ScopeSet,
) -> AuditEvent {
    let audit = AuditEvent::new(now, AuditKind::RefreshRotated, Outcome::Success, actor)
        .client(client.id.as_str())
        .user(record.user_id)
        .detail("family", record.family_id.to_string())
        .detail("jti", jti.to_string())
        .detail("scope", scope.to_string());
    match record.session_id {
        Some(sid) => audit.session(sid),
        None => audit.detail("offline", true),
    }
}
