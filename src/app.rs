//! The services every request shares: `AppState`, built once by `startup` and handed to
//! every handler, and the per-instance caches it holds.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::oauth::Provider;
use crate::shutdown::Draining;
use crate::storage::Store;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub auth: Authenticator,
    pub cookies: CookieNames,
    /// `scheme://host[:port]` of the issuer: the only Origin accepted on form posts.
    pub issuer_origin: String,
    pub provider: Provider,
    pub origins: Arc<OriginCache>,
    /// Request counters for `/metrics` on `server.metrics_bind`.
    pub metrics: Arc<Metrics>,
    /// Set on the first stop signal: readiness fails, connections close.
    pub draining: Draining,
}

/// The names of the login cookie, the browser-binding cookie and the refresh cookies,
/// which depend on whether the issuer is https.
#[derive(Debug, Clone)]
pub struct CookieNames {
    pub session: String,
    pub binding: String,
    /// `__Secure-` on https: the refresh cookie has a Path, so `__Host-` cannot apply.
    refresh_prefix: &'static str,
}

impl CookieNames {
    pub fn new(https: bool) -> Self {
        let prefix = if https { "__Host-" } else { "" };
        Self {
            session: format!("{prefix}portcullis_session"),
            binding: format!("{prefix}portcullis_login"),
            refresh_prefix: if https { "__Secure-" } else { "" },
        }
    }

    /// The refresh cookie of one client (client ids are URL-safe, so cookie-safe).
    pub fn refresh(&self, client_id: &str) -> String {
        format!("{}portcullis_rt_{client_id}", self.refresh_prefix)
    }
}

/// How long the registered origins are cached per instance.
const REFRESH: Duration = Duration::from_secs(5);

/// Origin → whether a cookie-delivery client registered it.
type Origins = HashMap<String, bool>;

/// The CORS origins registered by clients (see `http::cors`), cached per instance.
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

    /// `None` for an origin no client registered, else whether it may send credentials
    /// (a cookie-delivery client registered it). Reloaded at most every 5 s.
    pub async fn lookup(&self, origin: &str) -> Option<bool> {
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
