//! `/account`: who is signed in, their active sessions, and signing them out.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::logout::signed_out;
use super::{actor, request_ip, see_other};
use crate::app::AppState;
use crate::auth::CurrentSession;
use crate::domain::secret::constant_time_eq;
use crate::domain::session::{SessionId, describe_device};
use crate::http::error::PageError;
use crate::http::extract::{RequiredSession, SameOrigin};
use crate::http::form::StrictForm;
use crate::http::pages::{self, AccountPage, SessionView};

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf_token: String,
}

pub async fn home() -> HttpResponse {
    see_other("/account")
}

pub async fn show(
    state: web::Data<AppState>,
    RequiredSession(current): RequiredSession,
) -> Result<HttpResponse, PageError> {
    let sessions: Vec<SessionView> = state
        .auth
        .sessions_of(&current)
        .await?
        .into_iter()
        .map(|s| SessionView {
            id: s.id.to_string(),
            device: describe_device(s.user_agent.as_deref()),
            ip: s.ip.clone().unwrap_or_else(|| "unknown".into()),
            last_seen: pages::format_time(s.last_seen_at),
            signed_in: pages::format_time(s.auth_time),
            current: s.id == current.session.id,
        })
        .collect();
    let csrf = current.csrf_token();
    let user = &current.user;
    let html = pages::render(&AccountPage {
        css_href: pages::css_href(),
        csrf_token: &csrf,
        display_name: user.display_name(),
        username: user.username.as_str(),
        email: user.email.as_deref(),
        sessions: &sessions,
        notice: None,
    });
    Ok(pages::html(StatusCode::OK, html))
}

pub async fn revoke_one(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    StrictForm(form): StrictForm<CsrfForm>,
    _: SameOrigin,
    RequiredSession(current): RequiredSession,
) -> Result<HttpResponse, PageError> {
    check_csrf(&current, &form)?;
    let target = Uuid::parse_str(&path.into_inner())
        .map(SessionId)
        .map_err(|_| PageError::NotFound)?;
    let actor = actor(request_ip(&req, &state));
    state
        .auth
        .revoke_own_session(&current, target, &actor)
        .await?;
    if target == current.session.id {
        return Ok(signed_out(&state));
    }
    Ok(see_other("/account"))
}

pub async fn revoke_all(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<CsrfForm>,
    _: SameOrigin,
    RequiredSession(current): RequiredSession,
) -> Result<HttpResponse, PageError> {
    check_csrf(&current, &form)?;
    let actor = actor(request_ip(&req, &state));
    state.auth.revoke_all_sessions(&current, &actor).await?;
    Ok(signed_out(&state))
}

/// Every account form carries the session's synchronizer token.
fn check_csrf(current: &CurrentSession, form: &CsrfForm) -> Result<(), PageError> {
    // SECURITY: synchronizer token bound to this session, compared in constant time.
    if !constant_time_eq(&current.csrf_token(), &form.csrf_token) {
        return Err(PageError::Forbidden(
            "This request could not be verified. Please reload your account page and try again."
                .into(),
        ));
    }
    Ok(())
}
