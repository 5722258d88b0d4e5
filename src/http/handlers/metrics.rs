//! `GET /metrics`: the Prometheus exposition of `crate::metrics`, served only on
//! `server.metrics_bind`.

use actix_web::{HttpResponse, web};

use crate::app::AppState;

/// `GET /metrics` on the metrics listener.
pub async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(state.metrics.render(
            &state.auth.hasher,
            &state.provider.keys.alg_status(),
            state.provider.store.pool_stats(),
            state.provider.clock.now(),
        ))
}
