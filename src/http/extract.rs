//! Extractors: what handlers take from a request besides its parameters — the browser
//! session behind the login cookie, the sign-in binding cookie, the same-origin check of
//! form posts and the bearer token of `/userinfo`. A handler names what it needs as an
//! argument; a rejection answers as the handler would have.

use std::collections::HashMap;
use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::LocalBoxFuture;

use super::cookies;
use super::error::{BearerError, PageError};
use super::form::is_form_urlencoded;
use super::handlers::{check_same_origin, see_other};
use crate::app::AppState;
use crate::auth::{Authenticator, CurrentSession};
use crate::domain::secret::{OpaqueToken, kind};
use crate::oauth::bearer::{AuthorizationHeader, authorization_header};
use crate::oauth::error::{EndpointError, ErrorCode, OAuthError};
use crate::urlencoded::parse_strict;

fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, PageError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| PageError::Internal("no application state".into()))
}

/// The login cookie as sent, not yet looked up: for handlers that need the session only
/// sometimes, or only the cookie's value.
pub struct SessionCookie(Option<String>);

impl SessionCookie {
    /// The cookie's token, if it is one.
    pub fn token(&self) -> Option<OpaqueToken<kind::SessionToken>> {
        self.0.as_deref().and_then(OpaqueToken::parse)
    }

    /// The live session behind the cookie, recording activity (see
    /// `Authenticator::current_session`).
    pub async fn session(&self, auth: &Authenticator) -> Result<Option<CurrentSession>, PageError> {
        Ok(auth.current_session(self.0.as_deref()).await?)
    }
}

impl FromRequest for SessionCookie {
    type Error = PageError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(app_state(req).map(|state| Self(cookies::read(req, &state.cookies.session))))
    }
}

/// The browser session, if the request carries a live one.
pub struct OptionalSession(pub Option<CurrentSession>);

impl FromRequest for OptionalSession {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = app_state(req).map(|state| {
            let cookie = SessionCookie(cookies::read(req, &state.cookies.session));
            (state, cookie)
        });
        Box::pin(async move {
            let (state, cookie) = found?;
            Ok(Self(cookie.session(&state.auth).await?))
        })
    }
}

/// The browser session of a page that only a signed-in user may see: without one, the
/// browser is sent to sign in.
pub struct RequiredSession(pub CurrentSession);

impl FromRequest for RequiredSession {
    type Error = SessionRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = OptionalSession::from_request(req, payload);
        Box::pin(async move {
            match session.await {
                Ok(OptionalSession(Some(session))) => Ok(Self(session)),
                Ok(OptionalSession(None)) => Err(SessionRejection::SignIn),
                Err(e) => Err(SessionRejection::Page(e)),
            }
        })
    }
}

/// Why a `RequiredSession` could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionRejection {
    /// No live session: 303 to the sign-in page.
    #[error("no browser session")]
    SignIn,
    #[error(transparent)]
    Page(#[from] PageError),
}

impl ResponseError for SessionRejection {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignIn => StatusCode::SEE_OTHER,
            Self::Page(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::SignIn => see_other("/login"),
            Self::Page(e) => e.error_response(),
        }
    }
}

/// The browser's login-transaction binding cookie, or a new value for it: a sign-in form
/// and its authorization request are bound to the browser that started them.
pub struct Binding {
    pub token: OpaqueToken<kind::BrowserBinding>,
    /// The request carried no (usable) binding cookie: `token` is new and must be set.
    pub is_new: bool,
}

impl FromRequest for Binding {
    type Error = PageError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(app_state(req).map(|state| {
            match cookies::read(req, &state.cookies.binding)
                .as_deref()
                .and_then(OpaqueToken::parse)
            {
                Some(token) => Self {
                    token,
                    is_new: false,
                },
                None => Self {
                    token: OpaqueToken::generate(),
                    is_new: true,
                },
            }
        }))
    }
}

/// A form post that passed the same-origin check (`handlers::check_same_origin`).
pub struct SameOrigin;

impl FromRequest for SameOrigin {
    type Error = PageError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            app_state(req).and_then(|state| {
                check_same_origin(req, &state.issuer_origin).map(|()| SameOrigin)
            }),
        )
    }
}

/// The access token of a request to `/userinfo`, or the error to answer with. It is not a
/// rejection: the endpoint's CORS headers go on its errors too. Only a body that cannot be
/// read at all rejects the request.
pub struct BearerToken(Result<String, BearerError>);

impl BearerToken {
    pub fn into_result(self) -> Result<String, BearerError> {
        self.0
    }
}

impl FromRequest for BearerToken {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Bytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let body = body.await?;
            Ok(Self(bearer_token(&req, &body)))
        })
    }
}

fn bearer_error(code: ErrorCode, description: &str) -> BearerError {
    BearerError(EndpointError::OAuth(OAuthError::new(code, description)))
}

/// Exactly one of the header (RFC 6750 §2.1) and the form body (§2.2) may carry the token
/// (RFC 6750 §2).
fn bearer_token(req: &HttpRequest, body: &[u8]) -> Result<String, BearerError> {
    let header = req.headers().get(header::AUTHORIZATION);
    let from_header = match authorization_header(header.map(|v| v.as_bytes())) {
        AuthorizationHeader::Absent => None,
        AuthorizationHeader::Bearer(token) => Some(token.to_owned()),
        AuthorizationHeader::Malformed => {
            return Err(bearer_error(
                ErrorCode::InvalidRequest,
                "malformed Authorization header",
            ));
        }
        AuthorizationHeader::NotBearer => {
            return Err(bearer_error(
                ErrorCode::InvalidRequest,
                "use the Bearer scheme",
            ));
        }
    };
    let from_body = if is_form_urlencoded(req) && !body.is_empty() {
        let params: HashMap<String, String> = parse_strict(body)
            .map_err(|_| bearer_error(ErrorCode::InvalidRequest, "the form body is malformed"))?;
        params
            .get("access_token")
            .filter(|t| !t.is_empty())
            .cloned()
    } else {
        None
    };
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err(bearer_error(
            ErrorCode::InvalidRequest,
            "send the token once, not in both the header and the body",
        )),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(bearer_error(ErrorCode::LoginRequired, "no access token")),
    }
}
