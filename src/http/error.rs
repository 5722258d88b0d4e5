//! How failures become responses. Pages get an HTML error page carrying the request id;
//! a 500 logs its full cause and shows only a generic message.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use super::pages::{self, ErrorPage};
use crate::auth::{FactorError, LoginError};
use crate::oauth::error::{EndpointError, ErrorCode, OAuthError};
use crate::storage::StoreError;
use crate::telemetry::current_request_id;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    TooManyRequests { retry_after: u64 },
    #[error("service unavailable")]
    Unavailable { retry_after: u64 },
    /// An authorization request that cannot be answered to the client (unknown client,
    /// unregistered redirect URI): shown here, never redirected.
    #[error("{0}")]
    AuthorizeRefused(String),
    /// A logout request that cannot be trusted (RP-Initiated Logout 1.0 §4): shown here,
    /// never redirected.
    #[error("{0}")]
    LogoutRefused(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            Self::Unavailable {
                retry_after: crate::storage::OUTAGE_RETRY_AFTER_SECS,
            }
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<LoginError> for PageError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Expired => Self::Forbidden(
                "This sign-in form has expired or was already used. Please start again.".into(),
            ),
            LoginError::Busy => Self::TooManyRequests { retry_after: 5 },
            LoginError::Store(e) => e.into(),
            LoginError::Hash(m) => Self::Internal(m),
            LoginError::Factor(e) => Self::Internal(e.to_string()),
        }
    }
}

impl From<FactorError> for PageError {
    fn from(e: FactorError) -> Self {
        match e {
            FactorError::Store(e) => e.into(),
            FactorError::Crypto(m) => Self::Internal(m),
            FactorError::NoPendingEnrollment => {
                Self::BadRequest("This setup has expired; start again.".into())
            }
            FactorError::Code(p) => Self::BadRequest(sentence(&p.to_string())),
            FactorError::Passkey(p) => Self::BadRequest(sentence(&p.to_string())),
            FactorError::NoFactor => Self::BadRequest(
                "Set up an authenticator app first: recovery codes stand in for it.".into(),
            ),
        }
    }
}

/// A message of the domain (lower-case, no full stop) as a sentence on a page.
pub fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.is_empty() && !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

impl PageError {
    fn title_and_message(&self) -> (&'static str, String) {
        match self {
            Self::BadRequest(m) => ("Bad request", m.clone()),
            Self::AuthorizeRefused(m) => ("This sign-in request cannot be completed", m.clone()),
            Self::LogoutRefused(m) => ("This sign-out request cannot be completed", m.clone()),
            Self::Forbidden(m) => ("Request refused", m.clone()),
            Self::NotFound => ("Page not found", "There is nothing at this address.".into()),
            Self::MethodNotAllowed => (
                "Method not allowed",
                "This address does not accept that kind of request.".into(),
            ),
            Self::PayloadTooLarge => ("Request too large", "The form sent was too large.".into()),
            Self::UnsupportedMediaType(m) => ("Unsupported request", m.clone()),
            Self::TooManyRequests { .. } => (
                "Too many attempts",
                "Too many attempts. Please wait a moment and try again.".into(),
            ),
            Self::Unavailable { .. } => (
                "Temporarily unavailable",
                "The service is temporarily unavailable. Please try again in a few seconds.".into(),
            ),
            Self::Internal(_) => (
                "Something went wrong",
                "An unexpected error occurred. Please try again; if it persists, contact \
                 support with the request ID below."
                    .into(),
            ),
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::AuthorizeRefused(_) | Self::LogoutRefused(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let request_id = current_request_id();
        if let Self::Internal(cause) = self {
            tracing::error!(%request_id, error = %cause, "request failed with an internal error");
        }
        let (title, message) = self.title_and_message();
        let html = pages::render(&ErrorPage {
            css_href: pages::css_href(),
            status: status.as_u16(),
            title,
            message: &message,
            request_id: &request_id,
        });
        let mut res = pages::html(status, html);
        if let Self::TooManyRequests { retry_after } | Self::Unavailable { retry_after } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// Errors of the endpoints that authenticate clients (`/token`, `/revoke`, `/introspect`;
/// RFC 6749 §5.2): JSON, never cached; `invalid_client` is 401 with a
/// `WWW-Authenticate: Basic` challenge when the client tried the `Authorization` header,
/// 400 otherwise.
#[derive(Debug)]
pub struct TokenError {
    pub error: EndpointError,
    /// Whether the request carried an `Authorization` header.
    pub tried_authorization: bool,
}

impl TokenError {
    pub fn new(error: EndpointError, tried_authorization: bool) -> Self {
        Self {
            error,
            tried_authorization,
        }
    }
}

/// Errors raised before client authentication (malformed request bodies): the challenge
/// is kept, as RFC 6749 §5.2 always permits it; handlers pass the real flag with
/// [`TokenError::new`] for errors that come from authenticating the client.
impl From<EndpointError> for TokenError {
    fn from(e: EndpointError) -> Self {
        Self::new(e, true)
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

fn oauth_error_of(e: &EndpointError) -> OAuthError {
    match e {
        EndpointError::OAuth(e) => e.clone(),
        EndpointError::Throttled { .. } => OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many requests; retry later",
        ),
        EndpointError::Unavailable { cause, .. } => {
            tracing::warn!(request_id = %current_request_id(), error = %cause, "database unavailable");
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the service is temporarily unavailable; retry later",
            )
        }
        EndpointError::Internal(cause) => {
            tracing::error!(request_id = %current_request_id(), error = %cause, "endpoint failed");
            OAuthError::server_error()
        }
    }
}

/// `Retry-After` (RFC 9110 §10.2.3) for the errors a client should retry later.
fn retry_after(e: &EndpointError, res: &mut HttpResponse) {
    if let EndpointError::Throttled { retry_after } | EndpointError::Unavailable { retry_after, .. } =
        e
        && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
    {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

pub fn oauth_json(status: StatusCode, error: &OAuthError) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(serde_json::json!({
            "error": error.code.as_str(),
            "error_description": error.description,
        }))
}

impl ResponseError for TokenError {
    fn status_code(&self) -> StatusCode {
        match &self.error {
            // RFC 6749 §5.2: 401 "if the client attempted to authenticate via the
            // Authorization request header field"; otherwise 400 is allowed, and libraries
            // that send the secret in the body (openid-client's default) then surface our
            // error_description instead of a generic "challenge" error (oauth4webapi).
            EndpointError::OAuth(e)
                if e.code == ErrorCode::InvalidClient && self.tried_authorization =>
            {
                StatusCode::UNAUTHORIZED
            }
            EndpointError::OAuth(_) => StatusCode::BAD_REQUEST,
            EndpointError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            EndpointError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            EndpointError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let error = oauth_error_of(&self.error);
        let status = self.status_code();
        let mut res = oauth_json(status, &error);
        retry_after(&self.error, &mut res);
        // The challenge goes with the 401 only (RFC 9110 §15.5.2).
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"portcullis\""),
            );
        }
        res
    }
}

/// Errors of a bearer-protected resource (RFC 6750 §3): a `WWW-Authenticate: Bearer`
/// challenge; 401 for missing or invalid tokens, 403 for insufficient scope.
#[derive(Debug)]
pub struct BearerError(pub EndpointError);

impl From<EndpointError> for BearerError {
    fn from(e: EndpointError) -> Self {
        Self(e)
    }
}

impl std::fmt::Display for BearerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for BearerError {
    fn status_code(&self) -> StatusCode {
        match &self.0 {
            EndpointError::OAuth(e) => match e.code {
                ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
                ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
                // A request without any token gets a bare challenge (RFC 6750 §3.1).
                ErrorCode::LoginRequired => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            },
            EndpointError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            EndpointError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            EndpointError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let error = oauth_error_of(&self.0);
        let challenge = if error.code == ErrorCode::LoginRequired {
            "Bearer realm=\"portcullis\"".to_owned()
        } else {
            // The description is ours and contains no quotes or backslashes.
            format!(
                "Bearer realm=\"portcullis\", error=\"{}\", error_description=\"{}\"",
                error.code.as_str(),
                error.description.replace(['"', '\\'], "")
            )
        };
        let status = self.status_code();
        let mut res = if error.code == ErrorCode::LoginRequired {
            HttpResponse::build(status)
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        } else {
            oauth_json(status, &error)
        };
        retry_after(&self.0, &mut res);
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}
