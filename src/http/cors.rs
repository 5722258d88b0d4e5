//! CORS for the endpoints browsers call from other origins (`/token`, `/userinfo`,
//! `/jwks.json`, discovery, `/revoke`): only origins registered on some client are allowed,
//! never `*`. Origins of clients that receive their refresh tokens in a cookie may also send
//! credentials, on every one of these endpoints: libraries such as oidc-client-ts apply one
//! credentials mode to all their requests, so a credentialed discovery request must be
//! readable too. None of these endpoints but `/token` reads a cookie (`/userinfo` and
//! `/revoke` authenticate by bearer token or `client_id`), so allowing credentials grants
//! nothing besides reading the answer.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

use crate::app::OriginCache;

/// An origin allowed to read the response, and whether it may send credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    origin: HeaderValue,
    credentials: bool,
}

/// The request's Origin if it may read the response (one cache lookup).
pub async fn allowed_origin(req: &HttpRequest, cache: &OriginCache) -> Option<AllowedOrigin> {
    let value = req.headers().get(header::ORIGIN)?;
    let credentials = cache.lookup(value.to_str().ok()?).await?;
    Some(AllowedOrigin {
        origin: value.clone(),
        credentials,
    })
}

/// Adds the CORS response headers for an allowed origin: the exact origin (never `*`,
/// which the Fetch standard forbids together with credentials) and `Vary: Origin` on every
/// answer, so a shared cache never serves one origin's headers to another.
pub fn apply(res: &mut HttpResponse, allowed: Option<&AllowedOrigin>) {
    let headers = res.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(allowed) = allowed else {
        return;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed.origin.clone());
    if allowed.credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("WWW-Authenticate"),
    );
    headers.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
}

/// Answers a preflight (`OPTIONS`) the way the actual request will be answered.
pub async fn preflight(req: HttpRequest, cache: &OriginCache) -> HttpResponse {
    let allowed = allowed_origin(&req, cache).await;
    let mut res = HttpResponse::NoContent().finish();
    apply(&mut res, allowed.as_ref());
    if allowed.is_some() {
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        // Bearer tokens (`/userinfo`), client authentication (`/token`, `/revoke`) and
        // form or JSON bodies. Portcullis does not accept DPoP proofs, so no `DPoP`.
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    res
}

/// Runs an endpoint and adds the CORS headers for the request's origin to whatever it
/// answers, errors included.
pub async fn with_cors<E: actix_web::ResponseError>(
    req: &HttpRequest,
    cache: &OriginCache,
    result: impl std::future::Future<Output = Result<HttpResponse, E>>,
) -> HttpResponse {
    let allowed = allowed_origin(req, cache).await;
    let mut res = match result.await {
        Ok(res) => res,
        Err(e) => e.error_response(),
    };
    apply(&mut res, allowed.as_ref());
    res
}
