//! Thin handlers: parse, call `auth::`, render.

pub mod account;
pub mod assets;
pub mod health;
pub mod login;
pub mod logout;

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use super::AppState;
use super::client_ip::client_ip;
use super::error::PageError;
use super::middleware::current_request_id;
use crate::audit::Actor;

/// SECURITY: a state-changing form post must come from our own pages. Browsers send
/// `Origin` on POST (and `Sec-Fetch-Site`); a foreign or opaque ("null") origin is refused.
/// Non-browser clients send neither and still need the CSRF token.
pub fn check_same_origin(req: &HttpRequest, issuer_origin: &str) -> Result<(), PageError> {
    let refused = || {
        PageError::Forbidden(
            "This form was not submitted from this site. Please go back and try again.".into(),
        )
    };
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        if origin.to_str().map_err(|_| refused())? != issuer_origin {
            return Err(refused());
        }
        return Ok(());
    }
    if let Some(site) = req.headers().get("sec-fetch-site") {
        match site.to_str().map_err(|_| refused())? {
            "same-origin" | "none" => {}
            _ => return Err(refused()),
        }
    }
    Ok(())
}

pub fn request_ip(req: &HttpRequest, state: &AppState) -> Option<IpAddr> {
    client_ip(req, &state.settings.server.trusted_proxies)
}

pub fn actor(ip: Option<IpAddr>) -> Actor {
    Actor {
        ip: ip.map(|ip| ip.to_string()),
        request_id: Some(current_request_id()),
    }
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
