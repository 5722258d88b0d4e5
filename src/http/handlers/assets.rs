//! The stylesheet and icon, embedded in the binary.

use actix_web::HttpResponse;
use actix_web::http::header;

use crate::http::pages::CSS;

const FAVICON: &str = include_str!("../../../static/favicon.svg");
const FORM_POST_JS: &str = include_str!("../../../static/form_post.js");
const PASSKEYS_JS: &str = include_str!("../../../static/passkeys.js");

/// The script of the passkey buttons (sign-in, second step, account page).
pub async fn passkeys_script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(PASSKEYS_JS)
}

/// The one script any page uses: it submits form_post responses.
pub async fn form_post_script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(FORM_POST_JS)
}

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .body(CSS)
}

/// Served at `/favicon.svg` and `/favicon.ico` (browsers ask for the latter on their own).
pub async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "image/svg+xml"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(FAVICON)
}
