//! `POST /token`, `POST /revoke` and `POST /introspect`: form-encoded requests, JSON
//! answers in the shape of RFC 6749 §5.1/§5.2, never cached.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{actor, request_ip};
use crate::app::AppState;
use crate::domain::client::TokenDelivery;
use crate::http::cookies;
use crate::http::cors;
use crate::http::error::TokenError;
use crate::http::form::is_form_urlencoded;
use crate::oauth::error::{EndpointError, OAuthError};
use crate::oauth::token::TokenRequest;
use crate::urlencoded::{FormError, parse_strict};

pub async fn token(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    cors::with_cors(&req, &state.origins, handle(&req, &state, &body)).await
}

/// RFC 7009 §2.
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    cors::with_cors(&req, &state.origins, async {
        let params = form_params(&req, &body)?;
        let actor = actor(request_ip(&req, &state));
        state
            .provider
            .revoke(&params, authorization(&req), &actor)
            .await
            .map_err(|e| client_error(&req, e))?;
        // §2.2: 200 whether or not the token was valid.
        Ok::<_, TokenError>(no_store(HttpResponse::Ok()).finish())
    })
    .await
}

/// RFC 7662 §2.
pub async fn introspect(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, TokenError> {
    let params = form_params(&req, &body)?;
    let actor = actor(request_ip(&req, &state));
    let answer = state
        .provider
        .introspect(&params, authorization(&req), &actor)
        .await
        .map_err(|e| client_error(&req, e))?;
    Ok(no_store(HttpResponse::Ok()).json(answer))
}

async fn handle(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<HttpResponse, TokenError> {
    let params = form_params(req, body)?;
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let refresh_cookie = params
        .get("client_id")
        .and_then(|id| cookies::read(req, &state.cookies.refresh(id)));
    let actor = actor(request_ip(req, state));
    let issued = state
        .provider
        .token(
            &TokenRequest {
                params: &params,
                authorization: authorization(req),
                refresh_cookie: refresh_cookie.as_deref(),
                origin,
                navigation: req
                    .headers()
                    .get("sec-fetch-mode")
                    .is_some_and(|m| m.as_bytes().eq_ignore_ascii_case(b"navigate")),
            },
            &actor,
        )
        .await
        .map_err(|e| client_error(req, e))?;
    let mut response = issued.response;
    let mut builder = no_store(HttpResponse::Ok());
    if issued.delivery == TokenDelivery::Cookie
        && let Some(refresh_token) = response.refresh_token.take()
    {
        let now = state.provider.clock.now();
        let max_age = issued
            .refresh_expires_at
            .map_or(0, |at| (at - now).whole_seconds());
        builder.cookie(cookies::refresh_cookie(
            &state.cookies.refresh(issued.client_id.as_str()),
            &refresh_token,
            max_age,
        ));
    }
    Ok(builder.json(response))
}

/// An error from a call that authenticates the client: RFC 6749 §5.2's 401 challenge only
/// when the client tried the `Authorization` header.
fn client_error(req: &HttpRequest, error: EndpointError) -> TokenError {
    TokenError::new(error, req.headers().contains_key(header::AUTHORIZATION))
}

fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("invalid"))
}

/// RFC 6749 §3.2: form-encoded, parameters must not repeat; the message never echoes
/// input.
fn form_params(req: &HttpRequest, body: &[u8]) -> Result<HashMap<String, String>, TokenError> {
    if !is_form_urlencoded(req) {
        return Err(bad(
            "the request body must be application/x-www-form-urlencoded",
        ));
    }
    parse_strict(body).map_err(|e: FormError| bad(&e.to_string()))
}

fn no_store(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    builder
}

fn bad(description: &str) -> TokenError {
    EndpointError::OAuth(OAuthError::invalid_request(description)).into()
}
