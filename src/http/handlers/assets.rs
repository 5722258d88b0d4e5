//! The stylesheet, embedded in the binary; its URL carries a content hash.

use actix_web::HttpResponse;
use actix_web::http::header;

use crate::http::pages::CSS;

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .body(CSS)
}
