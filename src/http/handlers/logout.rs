//! `GET`/`POST /logout`: the end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0),
//! which applications send the browser to. `POST /logout/confirm`: our own sign-out forms
//! (the confirmation page and the account page's button), same-origin and CSRF-checked.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::authorize::internal;
use super::{actor, request_ip};
use crate::app::AppState;
use crate::auth::CurrentSession;
use crate::domain::client::TokenDelivery;
use crate::domain::secret::constant_time_eq;
use crate::http::cookies::{self, removal};
use crate::http::error::PageError;
use crate::http::extract::{OptionalSession, SameOrigin};
use crate::http::form::{StrictForm, StrictQuery};
use crate::http::pages::{self, LogoutPage, SignedOutPage};
use crate::oauth::logout::{LogoutOutcome, LogoutParams, LogoutRequest};

pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictQuery(params): StrictQuery<LogoutParams>,
    OptionalSession(session): OptionalSession,
) -> Result<HttpResponse, PageError> {
    let actor = actor(request_ip(&req, &state));
    let outcome = state
        .provider
        .end_session_request(params, session.as_ref(), &actor)
        .await
        .map_err(internal)?;
    respond(outcome, session.as_ref(), StatusCode::FOUND, &state)
}

/// RP-Initiated Logout 1.0 §2: the OP MUST support POST too. The post comes from the
/// application's site, so the browser sends no `SameSite=Lax` session cookie with it:
/// answer with a 303 to the same request as a GET, a top-level navigation that carries it
/// (as `/authorize` does). Only the logout parameters are kept.
pub async fn post(StrictForm(params): StrictForm<LogoutParams>) -> Result<HttpResponse, PageError> {
    let query =
        serde_urlencoded::to_string(&params).map_err(|e| PageError::BadRequest(e.to_string()))?;
    let location = if query.is_empty() {
        "/logout".to_owned()
    } else {
        format!("/logout?{query}")
    };
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    csrf_token: String,
    #[serde(flatten)]
    params: LogoutParams,
}

/// The user confirmed. The redirect target the form carries is validated again from
/// scratch (it must still be registered for the client), never trusted as posted.
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<ConfirmForm>,
    _: SameOrigin,
    OptionalSession(session): OptionalSession,
) -> Result<HttpResponse, PageError> {
    if let Some(session) = &session {
        // SECURITY: synchronizer token bound to this session, compared in constant time.
        if !constant_time_eq(&session.csrf_token(), &form.csrf_token) {
            return Err(PageError::Forbidden(
                "This sign-out request could not be verified. Please go back and try again.".into(),
            ));
        }
    }
    let from_account_page = form.params.is_empty();
    let actor = actor(request_ip(&req, &state));
    let outcome = state
        .provider
        .confirm_logout(form.params, session.as_ref(), &actor)
        .await
        .map_err(internal)?;
    if from_account_page && matches!(outcome, LogoutOutcome::SignedOut { .. }) {
        return Ok(signed_out(&state));
    }
    respond(outcome, session.as_ref(), StatusCode::SEE_OTHER, &state)
}

fn respond(
    outcome: LogoutOutcome,
    session: Option<&CurrentSession>,
    redirect: StatusCode,
    state: &AppState,
) -> Result<HttpResponse, PageError> {
    match outcome {
        LogoutOutcome::Refused(message) => Err(PageError::LogoutRefused(message)),
        LogoutOutcome::Confirm(request) => {
            let Some(session) = session else {
                return Err(PageError::Internal(
                    "a logout confirmation without a session".into(),
                ));
            };
            Ok(confirmation_page(&request, session))
        }
        LogoutOutcome::SignedOut {
            request,
            redirect: follow,
            ..
        } => {
            let location = request.location();
            let mut res = match location.as_deref() {
                Some(location) if follow => HttpResponse::build(redirect)
                    .insert_header((header::LOCATION, location))
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .finish(),
                _ => {
                    let html = pages::render(&SignedOutPage {
                        css_href: pages::css_href(),
                        client_name: request.client_name(),
                        return_to: location.as_deref(),
                    });
                    pages::html(StatusCode::OK, html)
                }
            };
            // Whether or not a session ended here, this browser's cookie is worthless now.
            let _ = res.add_cookie(&removal(&state.cookies.session));
            // A browser app's refresh cookie died with the session (its family was bound
            // to it): tell the browser to drop it too.
            if let Some(client) = request
                .client
                .as_ref()
                .filter(|c| c.refresh_token_delivery == TokenDelivery::Cookie)
            {
                let _ = res.add_cookie(&cookies::refresh_removal(
                    &state.cookies.refresh(client.id.as_str()),
                ));
            }
            Ok(res)
        }
    }
}

fn confirmation_page(request: &LogoutRequest, session: &CurrentSession) -> HttpResponse {
    let csrf = session.csrf_token();
    let redirect_host = request.redirect_uri.as_ref().map(|uri| {
        let url = uri.url();
        url.host_str().unwrap_or(url.scheme()).to_owned()
    });
    let params = &request.params;
    let html = pages::render(&LogoutPage {
        css_href: pages::css_href(),
        csrf_token: &csrf,
        username: session.user.username.as_str(),
        client_name: request.client_name(),
        redirect_host: redirect_host.as_deref(),
        id_token_hint: params.id_token_hint.as_deref(),
        client_id: params.client_id.as_deref(),
        post_logout_redirect_uri: params.post_logout_redirect_uri.as_deref(),
        state: params.state.as_deref(),
    });
    // Chromium applies form-action to every hop of the redirect chain: the confirmation
    // form ends at the client's post-logout URI.
    let csp = pages::csp_with_form_target(request.form_action_source().as_deref());
    pages::html_builder(StatusCode::OK)
        .insert_header(("Content-Security-Policy", csp))
        .body(html)
}

/// Back to the sign-in page, telling the browser to forget the session cookie.
pub fn signed_out(state: &AppState) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", "/login?signed_out=1"))
        .cookie(removal(&state.cookies.session))
        .finish()
}
