//! `/healthz`: the process is up. `/readyz`: the database answers too, and the server is
//! not shutting down.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::app::AppState;
use crate::storage::OUTAGE_RETRY_AFTER_SECS;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// How long readiness waits for the database: a load balancer's probe must get an answer
/// well within its own timeout, not after `database.connect_timeout`.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // Fails first thing in a shutdown, so load balancers stop sending before the listener
    // closes (see `crate::shutdown`).
    if state.draining.is_draining() {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "status": "draining" }));
    }
    let unavailable = || {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::RETRY_AFTER, OUTAGE_RETRY_AFTER_SECS.to_string()))
            .json(json!({ "status": "unavailable" }))
    };
    match tokio::time::timeout(READY_TIMEOUT, state.auth.store.ping()).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            unavailable()
        }
        Err(_) => {
            tracing::warn!(timeout = ?READY_TIMEOUT, "readiness check timed out");
            unavailable()
        }
    }
}
