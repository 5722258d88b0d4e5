//! Thin handlers: parse, call `auth::`, render.

pub mod account;
pub mod account_factors;
pub mod assets;
pub mod authorize;
pub mod consent;
pub mod discovery;
pub mod health;
pub mod login;
pub mod logout;
pub mod metrics;
pub mod passkeys;
pub mod second_factor;
pub mod token;
pub mod userinfo;

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use super::error::PageError;
use crate::app::AppState;
use crate::client_ip::client_ip;

pub use crate::audit::actor;

/// SECURITY: a state-changing form post must come from our own pages.
/// - `Sec-Fetch-Site`, when sent, must be `same-origin`.
/// - `Origin`, when sent, must be the issuer's origin, except `null`: browsers send
///   `Origin: null` for their own same-origin form posts under `Referrer-Policy:
///   no-referrer` (Chromium does), so `null` is accepted only with `Sec-Fetch-Site:
///   same-origin`. A sandboxed or cross-site frame also sends `null`, but never with
///   `same-origin` fetch metadata.
/// - Clients that send neither (not browsers) still need the CSRF token.
pub fn check_same_origin(req: &HttpRequest, issuer_origin: &str) -> Result<(), PageError> {
    let refused = || {
        PageError::Forbidden(
            "This form was not submitted from this site. Please go back and try again.".into(),
        )
    };
    let header_text = |name| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().map_err(|_| refused()))
            .transpose()
    };
    let site = header_text("sec-fetch-site")?;
    if site.is_some_and(|s| s != "same-origin") {
        return Err(refused());
    }
    match header_text(header::ORIGIN.as_str())? {
        Some("null") if site == Some("same-origin") => Ok(()),
        Some(origin) if origin == issuer_origin => Ok(()),
        Some(_) => Err(refused()),
        None => Ok(()),
    }
}

pub fn request_ip(req: &HttpRequest, state: &AppState) -> Option<IpAddr> {
    client_ip(req, &state.settings.server.trusted_proxies)
}

/// 303 See Other: after a form post the browser follows with a GET.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

pub async fn not_found() -> Result<HttpResponse, PageError> {
    Err(PageError::NotFound)
}

pub async fn method_not_allowed() -> Result<HttpResponse, PageError> {
    Err(PageError::MethodNotAllowed)
}
