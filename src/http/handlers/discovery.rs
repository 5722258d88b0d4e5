//! Discovery documents and the JWKS: public, cacheable, CORS-readable by registered origins.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::AppState;
use crate::http::cors;

/// Shorter than the key pre-publication window (DESIGN.md), so clients see a new key
/// before it signs.
const CACHE: &str = "public, max-age=300";

async fn json(
    req: &HttpRequest,
    state: &AppState,
    body: impl actix_web::body::MessageBody + 'static,
) -> HttpResponse {
    let origin = cors::allowed_origin(req, &state.origins).await;
    let mut res = HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, CACHE))
        .body(body);
    cors::apply(&mut res, origin.as_ref());
    res
}

pub async fn openid_configuration(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let doc = state.provider.openid_configuration().to_string();
    json(&req, &state, doc).await
}

pub async fn oauth_metadata(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let doc = state.provider.authorization_server_metadata().to_string();
    json(&req, &state, doc).await
}

pub async fn jwks(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let keys = state.provider.keys.jwks_json();
    json(&req, &state, keys).await
}

pub async fn preflight(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    cors::preflight(req, &state.origins).await
}
