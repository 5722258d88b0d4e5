//! `GET`/`POST /userinfo` with a bearer token (RFC 6750 §2.1 header, §2.2 form body).

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::AppState;
use crate::http::cors;
use crate::http::error::BearerError;
use crate::oauth::error::{EndpointError, ErrorCode, OAuthError};
use crate::urlencoded::parse_strict;

pub async fn userinfo(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    cors::with_cors(&req, &state.origins, handle(&req, &state, &body)).await
}

async fn handle(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<HttpResponse, BearerError> {
    let token = bearer_token(req, body)?;
    let claims = state.provider.userinfo(&token).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(claims))
}

fn error(code: ErrorCode, description: &str) -> BearerError {
    BearerError(EndpointError::OAuth(OAuthError::new(code, description)))
}

/// Exactly one of the header and the form body may carry the token (RFC 6750 §2).
fn bearer_token(req: &HttpRequest, body: &[u8]) -> Result<String, BearerError> {
    let from_header = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| error(ErrorCode::InvalidRequest, "malformed Authorization header"))?;
            match value.split_once(' ') {
                Some((scheme, token))
                    if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
                {
                    Some(token.trim().to_owned())
                }
                _ => return Err(error(ErrorCode::InvalidRequest, "use the Bearer scheme")),
            }
        }
        None => None,
    };
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let from_body = if is_form && !body.is_empty() {
        let params: HashMap<String, String> = parse_strict(body)
            .map_err(|_| error(ErrorCode::InvalidRequest, "the form body is malformed"))?;
        params
            .get("access_token")
            .filter(|t| !t.is_empty())
            .cloned()
    } else {
        None
    };
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err(error(
            ErrorCode::InvalidRequest,
            "send the token once, not in both the header and the body",
        )),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(error(ErrorCode::LoginRequired, "no access token")),
    }
}
