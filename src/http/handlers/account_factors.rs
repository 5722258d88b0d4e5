//! The account page's two-step verification forms: setting up an authenticator app (its
//! QR code, then a first code from it), recovery codes (shown once), and removing an
//! authenticator. Every form carries the session's CSRF token; the `Factors` service
//! audits each change.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::account::{CsrfForm, Notice, check_csrf_token};
use super::{actor, request_ip};
use crate::app::AppState;
use crate::auth::{
    CurrentSession, DEFAULT_RETURN_TO, DEFAULT_TOTP_NAME, FactorError, MAX_FACTOR_NAME, TotpSetup,
};
use crate::domain::mfa::AuthLevel;
use crate::http::cookies::binding_cookie;
use crate::http::error::{PageError, sentence};
use crate::http::extract::{Binding, RequiredSession, SameOrigin};
use crate::http::form::StrictForm;
use crate::http::pages::{self, RecoveryCodesPage, TotpSetupPage, TotpSetupView};

/// SECURITY: once an account has a second factor, its factors and recovery codes change
/// only from a session that used one: a password-only session (one that existed before
/// the first factor was set up, say) is sent through a step-up first, and comes back to
/// the account page.
pub(super) async fn step_up_first(
    state: &AppState,
    current: &CurrentSession,
    binding: &Binding,
) -> Result<Option<HttpResponse>, PageError> {
    Ok(step_up_target(state, current, binding)
        .await?
        .map(|target| {
            let mut response = HttpResponse::SeeOther();
            response.insert_header((actix_web::http::header::LOCATION, target.location));
            if let Some(cookie) = target.cookie {
                response.cookie(cookie);
            }
            response.finish()
        }))
}

/// Where a session must step up before it may change the account's factors, if it must.
pub(super) struct StepUpTarget {
    pub location: String,
    /// The browser-binding cookie, when the browser had none.
    pub cookie: Option<actix_web::cookie::Cookie<'static>>,
}

pub(super) async fn step_up_target(
    state: &AppState,
    current: &CurrentSession,
    binding: &Binding,
) -> Result<Option<StepUpTarget>, PageError> {
    if current.level() >= AuthLevel::MultiFactor
        || !state.auth.factors.has_any(current.user.id).await?
    {
        return Ok(None);
    }
    let tx = state
        .auth
        .start_login(&binding.token, DEFAULT_RETURN_TO, None)
        .await?;
    if !state
        .auth
        .begin_step_up(&tx.hash(), &current.session)
        .await?
    {
        return Err(PageError::Forbidden(
            "This request could not be completed. Please reload your account page.".into(),
        ));
    }
    Ok(Some(StepUpTarget {
        location: format!("/login?tx={}", tx.expose()),
        cookie: binding
            .is_new
            .then(|| binding_cookie(&state.cookies, binding.token.expose())),
    }))
}

#[derive(Deserialize)]
pub struct ConfirmTotpForm {
    csrf_token: String,
    factor_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    code: String,
}

/// POST /account/totp: a new pending authenticator, and the page that sets it up.
pub async fn begin_totp(
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<CsrfForm>,
    _: SameOrigin,
    RequiredSession(current): RequiredSession,
    binding: Binding,
) -> Result<HttpResponse, PageError> {
    check_csrf_token(&current, &form.csrf_token)?;
    if let Some(step_up) = step_up_first(&state, &current, &binding).await? {
        return Ok(step_up);
    }
    let setup = state
        .auth
        .factors
        .begin_totp(&current.user, state.auth.clock.now())
        .await?;
    Ok(setup_page(
        &current,
        StatusCode::OK,
        Some(&setup),
        DEFAULT_TOTP_NAME,
        None,
    ))
}

/// POST /account/totp/confirm: the first code proves the app works. A code that is not
/// accepted shows the same setup again (the secret opened from the pending factor) with
/// the reason beside the field.
pub async fn confirm_totp(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<ConfirmTotpForm>,
    _: SameOrigin,
    RequiredSession(current): RequiredSession,
    binding: Binding,
) -> Result<HttpResponse, PageError> {
    check_csrf_token(&current, &form.csrf_token)?;
    if let Some(step_up) = step_up_first(&state, &current, &binding).await? {
        return Ok(step_up);
    }
    let Ok(factor) = Uuid::parse_str(&form.factor_id) else {
        return Ok(expired_page(&current));
    };
    let actor = actor(request_ip(&req, &state));
    let factors = &state.auth.factors;
    let confirmed = factors
        .confirm_totp(
            &current.user,
            factor,
            &form.code,
            &form.name,
            state.auth.clock.now(),
            &actor,
        )
        .await;
    match confirmed {
        Ok(Some(codes)) => Ok(codes_page(&codes, true)),
        Ok(None) => Ok(Notice::TotpAdded.redirect()),
        Err(FactorError::NoPendingEnrollment) => Ok(expired_page(&current)),
        Err(FactorError::Code(problem)) => {
            match factors.pending_totp(&current.user, factor).await {
                Ok(setup) => Ok(setup_page(
                    &current,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(&setup),
                    &form.name,
                    Some(&sentence(&problem.to_string())),
                )),
                Err(FactorError::NoPendingEnrollment) => Ok(expired_page(&current)),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// POST /account/recovery-codes: a new set replaces the old one, shown once.
pub async fn regenerate_recovery_codes(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<CsrfForm>,
    _: SameOrigin,
    RequiredSession(current): RequiredSession,
    binding: Binding,
) -> Result<HttpResponse, PageError> {
    check_csrf_token(&current, &form.csrf_token)?;
    if let Some(step_up) = step_up_first(&state, &current, &binding).await? {
        return Ok(step_up);
    }
    let actor = actor(request_ip(&req, &state));
    let codes = state
        .auth
        .factors
        .regenerate_recovery_codes(current.user.id, state.auth.clock.now(), &actor)
        .await?;
    Ok(codes_page(&codes, false))
}

/// POST /account/factors/{factor_id}/remove.
pub async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    StrictForm(form): StrictForm<CsrfForm>,
    _: SameOrigin,
    RequiredSession(current): RequiredSession,
    binding: Binding,
) -> Result<HttpResponse, PageError> {
    check_csrf_token(&current, &form.csrf_token)?;
    if let Some(step_up) = step_up_first(&state, &current, &binding).await? {
        return Ok(step_up);
    }
    let factor = Uuid::parse_str(&path.into_inner()).map_err(|_| PageError::NotFound)?;
    let actor = actor(request_ip(&req, &state));
    let removed = state
        .auth
        .factors
        .remove(current.user.id, factor, state.auth.clock.now(), &actor)
        .await?;
    if !removed {
        return Err(PageError::NotFound);
    }
    Ok(Notice::FactorRemoved.redirect())
}

fn setup_page(
    current: &CurrentSession,
    status: StatusCode,
    setup: Option<&TotpSetup>,
    name: &str,
    error: Option<&str>,
) -> HttpResponse {
    let csrf = current.csrf_token();
    let html = pages::render(&TotpSetupPage {
        css_href: pages::css_href(),
        csrf_token: &csrf,
        setup: setup.map(|s| TotpSetupView {
            factor_id: s.factor_id.to_string(),
            secret_grouped: pages::group_in_fours(&s.secret),
            otpauth_uri: s.otpauth_uri.clone(),
            qr_svg: s.qr_svg(),
        }),
        name,
        name_max: MAX_FACTOR_NAME,
        error,
    });
    pages::html(status, html)
}

/// The enrollment the form names is gone (confirmed in another tab, replaced by a newer
/// setup, or removed): a fresh start is offered.
fn expired_page(current: &CurrentSession) -> HttpResponse {
    setup_page(current, StatusCode::CONFLICT, None, DEFAULT_TOTP_NAME, None)
}

fn codes_page(codes: &[String], enrolled: bool) -> HttpResponse {
    let html = pages::render(&RecoveryCodesPage {
        css_href: pages::css_href(),
        codes,
        enrolled,
    });
    pages::html(StatusCode::OK, html)
}
