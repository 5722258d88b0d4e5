//! `POST /token`: JSON in the shape of RFC 6749 §5.1/§5.2, never cached.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{actor, request_ip};
use crate::http::AppState;
use crate::http::cors;
use crate::http::error::TokenError;
use crate::http::form::{FormError, parse_strict};
use crate::oauth::error::{EndpointError, OAuthError};

pub async fn token(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    cors::with_cors(&req, &state.origins, handle(&req, &state, &body)).await
}

async fn handle(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<HttpResponse, TokenError> {
    let form_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(bad(
            "the request body must be application/x-www-form-urlencoded",
        ));
    }
    // RFC 6749 §3.2: parameters must not repeat; the message never echoes input.
    let params: HashMap<String, String> =
        parse_strict(body).map_err(|e: FormError| bad(&e.to_string()))?;
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("invalid"));
    let actor = actor(request_ip(req, state));
    let response = state.provider.token(&params, authorization, &actor).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(response))
}

fn bad(description: &str) -> TokenError {
    TokenError(EndpointError::OAuth(OAuthError::invalid_request(
        description,
    )))
}
