//! Who may call the admin API: the bearer of a valid Portcullis access token (RFC 6750
//! §2.1) carrying `portcullis:admin`, obtained by a client that still exists and still
//! holds that scope, so deleting or demoting an admin client cuts its tokens off at once
//! instead of when they expire.

use std::collections::HashMap;
use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use time::OffsetDateTime;

use super::AdminState;
use super::error::ApiError;
use crate::app::AppState;
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome, actor};
use crate::client_ip::client_ip;
use crate::domain::client::{ClientId, GrantType};
use crate::domain::scope::{ADMIN_SCOPE, ScopeSet};
use crate::domain::user::UserId;
use crate::oauth::bearer::{AuthorizationHeader, authorization_header};
use crate::oauth::claims::AccessTokenClaims;

/// The authenticated admin client of a request.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    pub client_id: ClientId,
    /// For audit rows: IP, request id and the acting client.
    pub actor: Actor,
}

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Set by `require_admin`; its absence is a wiring mistake, never a pass.
        ready(
            req.extensions()
                .get::<AdminCaller>()
                .cloned()
                .ok_or(ApiError::MissingToken),
        )
    }
}

/// Middleware on the `/admin/v1` scope: authenticates every request before any handler,
/// extractor or body parsing runs, except the public OpenAPI document.
pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if req.path() == super::OPENAPI_PATH {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    match authenticate(req.request()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(error) => {
            let response = error.error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

async fn authenticate(req: &HttpRequest) -> Result<AdminCaller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("no application state".into()))?;
    let admin = req
        .app_data::<web::Data<AdminState>>()
        .ok_or_else(|| ApiError::Internal("no admin API state".into()))?;
    let token = bearer(req)?;
    // A request without a valid token is not attributable to anyone: it is refused and
    // logged, not audited (an unauthenticated flood must not fill the audit table).
    let claims = state.provider.access_token_claims(token)?;
    let actor = actor(client_ip(req, &state.settings.server.trusted_proxies));
    if let Err(refused) = state.provider.ensure_access_token_live(&claims).await {
        // A deleted or disabled client's token is refused like any revoked one, but it is
        // still an attributable attempt (signed by us, naming the client): audited as such.
        if let Ok(id) = ClientId::parse(&claims.client_id) {
            let why = match state.provider.store.find_client(&id).await {
                Ok(None) => Some("the client of this token no longer exists"),
                Ok(Some(c)) if c.disabled => Some("the client of this token is disabled"),
                _ => None,
            };
            if let Some(why) = why {
                let error = ApiError::InvalidToken(why.into());
                record_denial(req, state, &admin.denials, &claims, &actor, &error).await;
                return Err(error);
            }
        }
        return Err(refused.into());
    }
    match authorize(state, &claims).await {
        Ok(client_id) => {
            let mut actor = actor;
            actor.client_id = Some(client_id.to_string());
            Ok(AdminCaller { client_id, actor })
        }
        Err(error) => {
            // A valid token refused: an authorisation decision about a known client,
            // audited (DESIGN: every auth decision) with what was asked for.
            if !matches!(
                error,
                ApiError::Internal(_) | ApiError::Busy { .. } | ApiError::Unavailable { .. }
            ) {
                record_denial(req, state, &admin.denials, &claims, &actor, &error).await;
            }
            Err(error)
        }
    }
}

/// How often one caller's refusals are written to the audit trail: any valid token will
/// do to be refused, so without a limit a signed-in user could fill the table.
const DENIAL_AUDIT_INTERVAL: time::Duration = time::Duration::minutes(1);
/// Entries kept before the expired ones are swept.
const DENIAL_AUDIT_KEYS: usize = 10_000;

/// Remembers when each caller (client, and user for a user's token) last had a refusal
/// audited. Not per address: one token sent from many addresses is still one caller.
#[derive(Default)]
pub struct DenialLog {
    seen: std::sync::Mutex<HashMap<DenialKey, OffsetDateTime>>,
}

type DenialKey = (String, Option<String>);

impl DenialLog {
    /// Whether this refusal gets an audit row (the first in the interval per caller).
    fn admit(&self, key: DenialKey, now: OffsetDateTime) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= DENIAL_AUDIT_KEYS {
            seen.retain(|_, at| now - *at < DENIAL_AUDIT_INTERVAL);
            if seen.len() >= DENIAL_AUDIT_KEYS {
                // Still full of live entries: a flood from many callers; log only.
                return false;
            }
        }
        match seen.get(&key) {
            Some(at) if now - *at < DENIAL_AUDIT_INTERVAL => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }

    /// The audit row could not be written: let the next refusal try again.
    fn forget(&self, key: &DenialKey) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

async fn record_denial(
    req: &HttpRequest,
    state: &AppState,
    denials: &DenialLog,
    claims: &AccessTokenClaims,
    actor: &Actor,
    error: &ApiError,
) {
    let reason = match error {
        ApiError::InsufficientScope => "insufficient_scope",
        ApiError::InvalidToken(_) => "client_revoked",
        _ => "error",
    };
    // A user's token (or any token not the client's own) names the user as well: the
    // client is only the application it was issued to.
    let user = (claims.sid.is_some() || claims.sub != claims.client_id)
        .then(|| uuid::Uuid::parse_str(&claims.sub).ok().map(UserId))
        .flatten();
    // The route, not the raw path: bounded, and what an operator filters on.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "(no such route)".to_owned());
    tracing::warn!(
        client_id = %claims.client_id,
        user_id = user.map(|u| u.to_string()),
        reason,
        route = %route,
        "refused an admin API request"
    );
    let now = state.provider.clock.now();
    let key = (claims.client_id.clone(), user.map(|u| u.to_string()));
    if !denials.admit(key.clone(), now) {
        return;
    }
    let mut event = AuditEvent::new(now, AuditKind::AdminDenied, Outcome::Failure, actor)
        .client(&claims.client_id)
        .detail("reason", reason)
        .detail("method", req.method().as_str())
        .detail("route", route)
        .detail("token", if user.is_some() { "user" } else { "client" });
    if let Some(user) = user {
        event = event.user(user);
    }
    if let Err(e) = state.provider.store.record_audit(&[event]).await {
        denials.forget(&key);
        tracing::warn!(error = %e, "could not audit a refused admin request");
    }
}

/// May the holder of this (valid) token use the admin API? Returns the admin client.
async fn authorize(state: &AppState, claims: &AccessTokenClaims) -> Result<ClientId, ApiError> {
    let scope = ScopeSet::parse(&claims.scope).unwrap_or_default();
    if !scope.contains(ADMIN_SCOPE) {
        return Err(ApiError::InsufficientScope);
    }
    // SECURITY: the token must be a client's own (client_credentials: no session, sub =
    // client_id), and the registration must still grant the scope right now.
    let revoked = || {
        ApiError::InvalidToken(
            "the client of this token no longer exists or no longer holds portcullis:admin".into(),
        )
    };
    if claims.sid.is_some() || claims.sub != claims.client_id {
        return Err(ApiError::InsufficientScope);
    }
    let client_id = ClientId::parse(&claims.client_id).map_err(|_| revoked())?;
    let client = state
        .provider
        .store
        .find_client(&client_id)
        .await?
        .ok_or_else(revoked)?;
    if !client.scopes.contains(ADMIN_SCOPE) || !client.allows_grant(GrantType::ClientCredentials) {
        return Err(revoked());
    }
    // A token obtained with a secret that has since been rotated (after a leak) is cut
    // off: rotating the secret must also end what the secret already bought.
    if !crate::oauth::claims::token_matches_secret(claims, &client) {
        return Err(revoked());
    }
    Ok(client_id)
}

/// RFC 6750 §2.1: `Authorization: Bearer <token>`. Anything else is no token at all.
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req.headers().get(header::AUTHORIZATION);
    match authorization_header(value.map(|v| v.as_bytes())) {
        AuthorizationHeader::Bearer(token) => Ok(token),
        AuthorizationHeader::Malformed => Err(ApiError::BadRequest(
            "the Authorization header is malformed".into(),
        )),
        AuthorizationHeader::Absent | AuthorizationHeader::NotBearer => Err(ApiError::MissingToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client: &str, user: Option<&str>) -> DenialKey {
        (client.to_owned(), user.map(str::to_owned))
    }

    #[test]
    fn one_refusal_per_caller_per_minute_is_audited() {
        let log = DenialLog::default();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert!(log.admit(key("a", None), t0));
        assert!(!log.admit(key("a", None), t0 + time::Duration::seconds(59)));
        assert!(log.admit(key("b", None), t0), "another client");
        assert!(
            log.admit(key("a", Some("user")), t0),
            "a user's token of that client"
        );
        assert!(log.admit(key("a", None), t0 + time::Duration::seconds(60)));
        // A failed write is retried at the next refusal.
        assert!(log.admit(key("c", None), t0));
        log.forget(&key("c", None));
        assert!(log.admit(key("c", None), t0));
    }

    #[test]
    fn a_flood_from_many_callers_stays_bounded() {
        let log = DenialLog::default();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for i in 0..DENIAL_AUDIT_KEYS {
            assert!(log.admit(key(&i.to_string(), None), t0));
        }
        assert!(!log.admit(key("one more", None), t0), "full: log only");
        let later = t0 + DENIAL_AUDIT_INTERVAL;
        assert!(
            log.admit(key("one more", None), later),
            "expired entries swept"
        );
        let size = log.seen.lock().map(|s| s.len()).unwrap_or(usize::MAX);
        assert_eq!(size, 1);
    }
}
