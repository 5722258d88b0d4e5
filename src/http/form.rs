//! Strict `application/x-www-form-urlencoded` parsing for every form and, later, every
//! OAuth endpoint: a repeated parameter, a malformed percent-escape, invalid UTF-8, too
//! many parameters or an oversized body are refused instead of being guessed at
//! (RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once").

use std::collections::HashMap;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::PageError;

/// More parameters than any of our forms or endpoints take.
const MAX_PARAMS: usize = 64;

/// An oversized body is read and discarded up to this size before the 413 is sent:
/// closing a connection with unread data makes TCP reset it, and the client would never
/// see the response. A body declared or found larger is cut off at once (the client may
/// then see a reset instead of the 413).
const MAX_DRAIN_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The name is kept for tests and logs, never echoed into a page.
    #[error("a parameter is repeated")]
    Duplicate(String),
    #[error("the request is not valid form encoding")]
    BadEncoding,
    #[error("the request is not valid UTF-8")]
    BadUtf8,
    /// NUL and other control characters have no place in any parameter we take (and
    /// Postgres refuses NUL in text).
    #[error("the request contains control characters")]
    ControlCharacter,
    #[error("the request has too many parameters")]
    TooManyParams,
    #[error("{0}")]
    Shape(String),
}

/// Parses a urlencoded string into unique name/value pairs.
pub fn parse_pairs(input: &[u8]) -> Result<HashMap<String, String>, FormError> {
    let mut out = HashMap::new();
    if input.is_empty() {
        return Ok(out);
    }
    for (i, part) in input.split(|b| *b == b'&').enumerate() {
        if i >= MAX_PARAMS {
            return Err(FormError::TooManyParams);
        }
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.iter().position(|b| *b == b'=') {
            Some(eq) => (&part[..eq], &part[eq + 1..]),
            None => (part, &b""[..]),
        };
        let name = decode(name)?;
        let value = decode(value)?;
        if out.contains_key(&name) {
            return Err(FormError::Duplicate(name));
        }
        out.insert(name, value);
    }
    Ok(out)
}

fn decode(raw: &[u8]) -> Result<String, FormError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or(FormError::BadEncoding)?;
                let hi = hex_val(hex[0]).ok_or(FormError::BadEncoding)?;
                let lo = hex_val(hex[1]).ok_or(FormError::BadEncoding)?;
                bytes.push(hi << 4 | lo);
                i += 2;
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    let text = String::from_utf8(bytes).map_err(|_| FormError::BadUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(FormError::ControlCharacter);
    }
    Ok(text)
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Validates `input` strictly, then deserializes it into `T`. Once the strict checks
/// pass, serde_urlencoded reads exactly the same names and values.
pub fn parse_strict<T: DeserializeOwned>(input: &[u8]) -> Result<T, FormError> {
    parse_pairs(input)?;
    serde_urlencoded::from_bytes(input).map_err(|e| FormError::Shape(e.to_string()))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent_escapes() {
        let pairs = parse_pairs(b"a=x+y&b=%C3%A9%26&c&").unwrap_or_default();
        assert_eq!(pairs.get("a").map(String::as_str), Some("x y"));
        assert_eq!(pairs.get("b").map(String::as_str), Some("é&"));
        assert_eq!(pairs.get("c").map(String::as_str), Some(""));
    }

    #[test]
    fn refuses_what_it_cannot_read_unambiguously() {
        let cases: [(&[u8], FormError); 7] = [
            (b"a=1&a=2", FormError::Duplicate("a".into())),
            (b"a=%zz", FormError::BadEncoding),
            (b"a=%4", FormError::BadEncoding),
            (b"a=%FF%FE", FormError::BadUtf8),
            (b"a=\xff", FormError::BadUtf8),
            (b"a=x%00y", FormError::ControlCharacter),
            (b"a=x%0Ay", FormError::ControlCharacter),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_pairs(input),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let many: Vec<u8> = (0..65)
            .map(|i| format!("p{i}=1"))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes();
        assert_eq!(parse_pairs(&many), Err(FormError::TooManyParams));
    }

    #[derive(Debug, serde::Deserialize)]
    struct Login {
        username: String,
        #[serde(default)]
        remember: Option<String>,
    }

    #[test]
    fn deserializes_into_structs_and_ignores_unknown_fields() {
        let login: Login = parse_strict(b"username=al&extra=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(login.username, "al");
        assert_eq!(login.remember, None);
        let with_option: Login =
            parse_strict(b"username=a+l&remember=yes").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(with_option.username, "a l");
        assert_eq!(with_option.remember.as_deref(), Some("yes"));
        let missing = parse_strict::<Login>(b"x=1");
        assert!(matches!(missing, Err(FormError::Shape(m)) if m.contains("username")));
        assert_eq!(
            parse_strict::<Login>(b"username=a&username=b").err(),
            Some(FormError::Duplicate("username".into()))
        );
    }
}
