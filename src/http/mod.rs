//! HTTP: routes, thin handlers, extractors, middleware and the mapping of errors to
//! responses.

pub mod client_ip;
pub mod cookies;
pub mod cors;
pub mod error;
pub mod extract;
pub mod form;
pub mod handlers;
pub mod middleware;
pub mod pages;
pub mod routes;

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::oauth::Provider;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub auth: Authenticator,
    pub cookies: cookies::CookieNames,
    /// `scheme://host[:port]` of the issuer: the only Origin accepted on form posts.
    pub issuer_origin: String,
    pub provider: Provider,
    pub origins: Arc<cors::OriginCache>,
    /// Rate of `admin.denied` audit rows per caller.
    pub admin_denials: Arc<crate::admin::auth::DenialLog>,
    /// Request counters for `/metrics` on `server.metrics_bind`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Set on the first stop signal: readiness fails, connections close.
    pub draining: crate::shutdown::Draining,
}
