//! CORS for the endpoints browsers call from other origins (`/token`, `/userinfo`,
//! `/jwks.json`, discovery, `/revoke`): only origins registered on some client are allowed,
//! never `*`. Credentials (the refresh cookie) are allowed only on `/token`, and only for
//! origins of clients that receive their refresh tokens in a cookie.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

use crate::storage::Store;

/// How long the registered origins are cached per instance.
const REFRESH: Duration = Duration::from_secs(5);

/// Origin → whether a cookie-delivery client registered it.
type Origins = HashMap<String, bool>;

pub struct OriginCache {
    store: Arc<dyn Store>,
    cached: RwLock<Option<(Instant, Arc<Origins>)>>,
}

impl OriginCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cached: RwLock::new(None),
        }
    }

    /// Whether `origin` is registered on some client (reloaded at most every 5 s).
    pub async fn allows(&self, origin: &str) -> bool {
        self.lookup(origin).await.is_some()
    }

    /// Whether `origin` may send credentials (the refresh cookie) to `/token`.
    pub async fn allows_credentials(&self, origin: &str) -> bool {
        self.lookup(origin).await == Some(true)
    }

    async fn lookup(&self, origin: &str) -> Option<bool> {
        let fresh = self
            .cached
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < REFRESH)
            .map(|(_, set)| Arc::clone(set));
        let set = match fresh {
            Some(set) => set,
            None => match self.store.allowed_origins().await {
                Ok(list) => {
                    let set: Arc<Origins> = Arc::new(list.into_iter().collect());
                    *self.cached.write().unwrap_or_else(|e| e.into_inner()) =
                        Some((Instant::now(), Arc::clone(&set)));
                    set
                }
                Err(error) => {
                    tracing::warn!(%error, "could not load CORS origins");
                    return None;
                }
            },
        };
        set.get(origin).copied()
    }
}

/// The request's Origin if it may read the response.
pub async fn allowed_origin(req: &HttpRequest, cache: &OriginCache) -> Option<String> {
    let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
    cache.allows(origin).await.then(|| origin.to_owned())
}

/// Adds the CORS response headers for an allowed origin.
pub fn apply(res: &mut HttpResponse, origin: Option<&str>) {
    let headers = res.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(value) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("WWW-Authenticate"),
        );
        headers.insert(
            header::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        );
    }
}

/// Allows the response to a credentialed request to be read (`/token` only).
async fn apply_credentials(req: &HttpRequest, cache: &OriginCache, res: &mut HttpResponse) {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return;
    };
    if cache.allows_credentials(origin).await {
        res.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// Answers a preflight (`OPTIONS`).
pub async fn preflight(req: HttpRequest, cache: &OriginCache) -> HttpResponse {
    let origin = allowed_origin(&req, cache).await;
    let mut res = HttpResponse::NoContent().finish();
    apply(&mut res, origin.as_deref());
    if origin.is_some() && req.path() == "/token" {
        apply_credentials(&req, cache, &mut res).await;
    }
    if origin.is_some() {
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
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
    let origin = allowed_origin(req, cache).await;
    let mut res = match result.await {
        Ok(res) => res,
        Err(e) => e.error_response(),
    };
    apply(&mut res, origin.as_deref());
    res
}

/// `with_cors` for `/token`: also allows credentials for cookie-delivery clients' origins.
pub async fn with_credentialed_cors<E: actix_web::ResponseError>(
    req: &HttpRequest,
    cache: &OriginCache,
    result: impl std::future::Future<Output = Result<HttpResponse, E>>,
) -> HttpResponse {
    let mut res = with_cors(req, cache, result).await;
    apply_credentials(req, cache, &mut res).await;
    res
}
