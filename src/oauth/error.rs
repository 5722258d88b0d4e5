//! OAuth 2.0 / OpenID Connect error codes (RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3.1;
//! OpenID Connect Core §3.1.2.6).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    InvalidToken,
    InsufficientScope,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
        }
    }
}

/// An error for a client: a code plus a human-readable description. Descriptions never
/// contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", code.as_str(), description)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidToken, description)
    }

    pub fn server_error() -> Self {
        Self::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
    }
}

/// A failure of a protocol endpoint: a client error, or an internal one (logged, and
/// shown only as `server_error`).
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// Too many requests from one address; retry after this many seconds.
    #[error("too many requests")]
    Throttled { retry_after: u64 },
    /// The database is unreachable: `temporarily_unavailable` (RFC 6749 §4.1.2.1),
    /// 503 with `Retry-After`, so clients can tell an outage from a bug.
    #[error("the database is unavailable: {cause}")]
    Unavailable { retry_after: u64, cause: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::storage::StoreError> for EndpointError {
    fn from(e: crate::storage::StoreError) -> Self {
        if e.is_unavailable() {
            Self::Unavailable {
                retry_after: crate::storage::OUTAGE_RETRY_AFTER_SECS,
                cause: e.to_string(),
            }
        } else {
            Self::Internal(e.to_string())
        }
    }
}

impl From<crate::keys::KeyError> for EndpointError {
    fn from(e: crate::keys::KeyError) -> Self {
        match e {
            crate::keys::KeyError::Store(e) => e.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}
