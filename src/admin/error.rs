//! Every admin API error is an RFC 9457 problem document (`application/problem+json`):
//! `type` is `about:blank` (RFC 9457 §4.2.1, the HTTP status says it all), `title` the
//! status phrase, `detail` what went wrong, plus `code` (a stable machine-readable slug)
//! and the request id. Bearer failures also carry the RFC 6750 §3 challenge.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::FactorError;
use crate::clients::{RegistrationError, UpdateError};
use crate::domain::scope::ADMIN_SCOPE;
use crate::keys::KeyError;
use crate::oauth::error::EndpointError;
use crate::password::HashError;
use crate::storage::StoreError;
use crate::telemetry::current_request_id;
use crate::users::UserError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status code and `code` identify the problem.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub problem_type: &'static str,
    /// The HTTP status phrase.
    #[schema(example = "Not Found")]
    pub title: String,
    #[schema(example = 404)]
    pub status: u16,
    /// What went wrong, for a human.
    #[schema(example = "no such client")]
    pub detail: String,
    /// A stable identifier of the problem, for programs.
    #[schema(example = "not_found")]
    pub code: &'static str,
    /// The `X-Request-Id` of the response, to find the request in the logs.
    pub request_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No bearer token at all (RFC 6750 §3.1: a bare challenge).
    #[error("an access token is required")]
    MissingToken,
    /// The token is invalid, expired, revoked, or its client lost the admin scope.
    #[error("{0}")]
    InvalidToken(String),
    /// A valid token without the admin scope.
    #[error("the access token lacks the portcullis:admin scope")]
    InsufficientScope,
    #[error("{0}")]
    BadRequest(String),
    /// The body parsed but a value breaks a rule.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("there is no such route in the admin API")]
    UnknownRoute,
    #[error("this route does not accept that method")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the server is busy; retry shortly")]
    Busy { retry_after: u64 },
    /// The database is unreachable (logged with its cause): 503, retry later.
    #[error("the database is temporarily unavailable; retry shortly")]
    Unavailable { retry_after: u64, cause: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("no such {what}"))
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::BadRequest(_) => "bad_request",
            Self::Invalid(_) => "invalid_value",
            Self::NotFound(_) => "not_found",
            Self::UnknownRoute => "unknown_route",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Busy { .. } => "busy",
            Self::Unavailable { .. } => "temporarily_unavailable",
            Self::Internal(_) => "server_error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Internal(_) => "the server could not complete the request".into(),
            other => other.to_string(),
        }
    }

    /// The RFC 6750 §3 challenge for authentication failures.
    fn challenge(&self) -> Option<String> {
        let realm = "Bearer realm=\"portcullis\"";
        match self {
            Self::MissingToken => Some(realm.to_owned()),
            // The description is ours and contains no quotes or backslashes.
            Self::InvalidToken(d) => Some(format!(
                "{realm}, error=\"invalid_token\", error_description=\"{}\"",
                d.replace(['"', '\\'], "")
            )),
            Self::InsufficientScope => Some(format!(
                "{realm}, error=\"insufficient_scope\", scope=\"{ADMIN_SCOPE}\""
            )),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) | Self::UnknownRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Busy { .. } | Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let request_id = current_request_id();
        match self {
            Self::Internal(cause) => {
                tracing::error!(%request_id, error = %cause, "admin API request failed");
            }
            Self::Unavailable { cause, .. } => {
                tracing::warn!(%request_id, error = %cause, "database unavailable");
            }
            _ => {}
        }
        let problem = Problem {
            problem_type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            code: self.code(),
            request_id,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut res = HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body);
        let headers = res.headers_mut();
        if let Some(challenge) = self.challenge()
            && let Ok(v) = HeaderValue::from_str(&challenge)
        {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        match self {
            Self::MethodNotAllowed { allow } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, v);
                }
            }
            Self::Busy { retry_after } | Self::Unavailable { retry_after, .. } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(format!("{what} already exists")),
            other if other.is_unavailable() => Self::Unavailable {
                retry_after: crate::storage::OUTAGE_RETRY_AFTER_SECS,
                cause: other.to_string(),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(e) => e.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::OAuth(e) => Self::InvalidToken(e.description),
            EndpointError::Throttled { retry_after } => Self::Busy { retry_after },
            EndpointError::Unavailable { retry_after, cause } => {
                Self::Unavailable { retry_after, cause }
            }
            EndpointError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Busy { retry_after: 5 },
            HashError::Failed(cause) => Self::Internal(cause),
        }
    }
}

impl From<RegistrationError> for ApiError {
    fn from(e: RegistrationError) -> Self {
        match e {
            RegistrationError::Invalid(e) => Self::Invalid(e.to_string()),
            RegistrationError::Store(e) => e.into(),
        }
    }
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::NotFound => Self::not_found("client"),
            UpdateError::Invalid(e) => Self::Invalid(e.to_string()),
            UpdateError::Store(e) => e.into(),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::NotFound => Self::not_found("user"),
            UserError::Username(e) => Self::Invalid(e.to_string()),
            UserError::Profile(e) => Self::Invalid(e.to_string()),
            UserError::Password(e) => Self::Invalid(e.to_string()),
            UserError::Conflict(what) => Self::Conflict(format!("{what} already exists")),
            UserError::Hash(e) => e.into(),
            UserError::Store(e) => e.into(),
        }
    }
}

impl From<FactorError> for ApiError {
    fn from(e: FactorError) -> Self {
        match e {
            FactorError::Store(e) => e.into(),
            FactorError::NoFactor => {
                Self::Conflict("the user has no second factor; enroll one first".into())
            }
            FactorError::NoPendingEnrollment => {
                Self::Conflict("no pending enrollment of this factor".into())
            }
            FactorError::Code(problem) => Self::Invalid(problem.to_string()),
            FactorError::Passkey(problem) => Self::Invalid(problem.to_string()),
            FactorError::Crypto(cause) => Self::Internal(cause),
        }
    }
}

/// Bodies that are not JSON, too large, or do not match the schema (RFC 9457 for each).
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => ApiError::PayloadTooLarge,
        E::ContentType => ApiError::UnsupportedMediaType,
        E::Deserialize(e) => ApiError::BadRequest(format!("the JSON body is invalid: {e}")),
        other => ApiError::BadRequest(format!("the body could not be read: {other}")),
    }
}
