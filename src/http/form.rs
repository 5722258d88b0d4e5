//! Extractors for strict `application/x-www-form-urlencoded` bodies and query strings
//! (the parsing itself is `crate::urlencoded`).

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::error::PageError;
use crate::app::AppState;
use crate::urlencoded::parse_strict;

/// An oversized body is read and discarded up to this size before the 413 is sent:
/// closing a connection with unread data makes TCP reset it, and the client would never
/// see the response. A body declared or found larger is cut off at once (the client may
/// then see a reset instead of the 413).
const MAX_DRAIN_BYTES: usize = 4 * 1024 * 1024;

/// A form body parsed strictly into `T`.
#[derive(Debug)]
pub struct StrictForm<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for StrictForm<T> {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(16 * 1024, |s| s.settings.server.max_form_bytes);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let form_type = content_type.as_deref().is_some_and(|ct| {
                let mut parts = ct.split(';').map(str::trim);
                parts.next() == Some("application/x-www-form-urlencoded")
                    && parts.all(|p| !p.starts_with("charset=") || p == "charset=utf-8")
            });
            if !form_type {
                return Err(PageError::UnsupportedMediaType(
                    "Expected a form (application/x-www-form-urlencoded).".into(),
                ));
            }
            if declared_len.is_some_and(|n| n > MAX_DRAIN_BYTES) {
                return Err(PageError::PayloadTooLarge);
            }
            let mut body = web::BytesMut::new();
            let mut seen = 0usize;
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| {
                    PageError::BadRequest("The request body could not be read.".into())
                })?;
                seen += chunk.len();
                if seen > MAX_DRAIN_BYTES {
                    return Err(PageError::PayloadTooLarge);
                }
                if seen <= limit {
                    body.extend_from_slice(&chunk);
                }
            }
            if seen > limit {
                return Err(PageError::PayloadTooLarge);
            }
            parse_strict(&body)
                .map(StrictForm)
                .map_err(|e| PageError::BadRequest(e.to_string()))
        })
    }
}

/// A query string parsed strictly into `T`.
#[derive(Debug)]
pub struct StrictQuery<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for StrictQuery<T> {
    type Error = PageError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = parse_strict(req.query_string().as_bytes())
            .map(StrictQuery)
            .map_err(|e| PageError::BadRequest(e.to_string()));
        std::future::ready(result)
    }
}

/// Whether the request declares a form body (`application/x-www-form-urlencoded`, any
/// parameters): the loose test of `/token` and `/userinfo`, not `StrictForm`'s.
pub fn is_form_urlencoded(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}
