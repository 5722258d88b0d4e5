//! Passkeys over HTTP. The options endpoints answer JSON for `static/passkeys.js`; the
//! responses come back as ordinary form posts (the credential's JSON in a hidden field),
//! so the answer is a page or a redirect as for the password and code forms.
//!
//! - `POST /login/passkey/options` (tx, csrf_token) and `POST /login/passkey` (tx,
//!   csrf_token, credential): sign-in without a password, or the second step.
//! - `POST /account/passkeys/options` (csrf_token) and `POST /account/passkeys`
//!   (csrf_token, name, credential): registration; `POST /account/factors/{id}/rename`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::account::{CsrfForm, Notice, check_csrf_token};
use super::account_factors::{step_up_first, step_up_target};
use super::login::expired_form;
use super::{actor, request_ip};
use crate::app::AppState;
use crate::auth::{Browser, PasskeyForm, PasskeyOptionsForm, SignInOutcome, registration_owner};
use crate::http::error::PageError;
use crate::http::extract::{Binding, RequiredSession, SameOrigin, SessionCookie};
use crate::http::form::StrictForm;
use crate::http::pages::{self, RecoveryCodesPage};

#[derive(Deserialize)]
pub struct RegisterForm {
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    credential: String,
}

#[derive(Deserialize)]
pub struct RenameForm {
    csrf_token: String,
    #[serde(default)]
    name: String,
}

#[derive(Serialize)]
struct JsonError<'a> {
    error: &'a str,
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    json(status, &JsonError { error: message })
}

fn browser<'a>(
    req: &'a HttpRequest,
    binding: &'a Binding,
    login_cookie: &SessionCookie,
    ip: Option<std::net::IpAddr>,
    actor: &'a crate::audit::Actor,
) -> Browser<'a> {
    Browser {
        binding: &binding.token,
        binding_is_new: binding.is_new,
        ip,
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        actor,
        replaces: login_cookie.token().map(|t| t.hash()),
    }
}

/// POST /login/passkey/options: the request options of the form's ceremony.
pub async fn login_options(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<PasskeyOptionsForm>,
    _: SameOrigin,
    binding: Binding,
    login_cookie: SessionCookie,
) -> Result<HttpResponse, PageError> {
    let ip = request_ip(&req, &state);
    let actor = actor(ip);
    let browser = browser(&req, &binding, &login_cookie, ip, &actor);
    match state.auth.passkey_options(form, &browser).await? {
        Some(options) => Ok(json(StatusCode::OK, &options)),
        None => Ok(json_error(
            StatusCode::FORBIDDEN,
            "This sign-in form has expired or could not be verified. Reload the page and try again.",
        )),
    }
}

/// POST /login/passkey: the assertion; rendered like a password or code form.
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<PasskeyForm>,
    _: SameOrigin,
    binding: Binding,
    login_cookie: SessionCookie,
) -> Result<HttpResponse, PageError> {
    let ip = request_ip(&req, &state);
    let actor = actor(ip);
    let outcome = {
        let browser = browser(&req, &binding, &login_cookie, ip, &actor);
        state.auth.passkey_sign_in(form, &browser).await?
    };
    match outcome {
        SignInOutcome::Expired(fresh) => expired_form(&state, fresh, binding),
        // The second step answers on the code page, a sign-in without a password on
        // the sign-in page.
        SignInOutcome::Checked { form, outcome, .. } if form.transaction.second_step.is_some() => {
            super::login::render_code_outcome(&state, *form, binding.token, outcome).await
        }
        SignInOutcome::Checked { form, outcome, .. } => {
            super::login::render_outcome(&state, *form, binding.token, "", outcome).await
        }
    }
}

/// A password-only session of an account with a factor must step up before it adds one:
/// the page script follows `step_up`.
#[derive(Serialize)]
struct StepUpRequired<'a> {
    error: &'a str,
    step_up: &'a str,
}

/// POST /account/passkeys/options: the creation options of a new passkey.
pub async fn register_options(
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<CsrfForm>,
    _: SameOrigin,
    RequiredSession(current): RequiredSession,
    binding: Binding,
) -> Result<HttpResponse, PageError> {
    check_csrf_token(&current, &form.csrf_token)?;
    if let Some(target) = step_up_target(&state, &current, &binding).await? {
        let mut response = json(
            StatusCode::FORBIDDEN,
            &StepUpRequired {
                error: "Confirm it is you with your second factor first.",
                step_up: &target.location,
            },
        );
        if let Some(cookie) = target.cookie {
            response.add_cookie(&cookie).ok();
        }
        return Ok(response);
    }
    let options = state
        .auth
        .factors
        .begin_passkey_registration(
            &current.user,
            registration_owner(current.session.id),
            state.auth.clock.now(),
        )
        .await?;
    Ok(json(StatusCode::OK, &options))
}

/// POST /account/passkeys: the authenticator's response; the passkey is stored.
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<RegisterForm>,
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
        .finish_passkey_registration(
            &current.user,
            &registration_owner(current.session.id),
            &form.credential,
            &form.name,
            state.auth.clock.now(),
            &actor,
        )
        .await?;
    match codes {
        Some(codes) => {
            let html = pages::render(&RecoveryCodesPage {
                css_href: pages::css_href(),
                codes: &codes,
                enrolled: true,
            });
            Ok(pages::html(StatusCode::OK, html))
        }
        None => Ok(Notice::PasskeyAdded.redirect()),
    }
}

/// POST /account/factors/{factor_id}/rename.
pub async fn rename(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    StrictForm(form): StrictForm<RenameForm>,
    _: SameOrigin,
    RequiredSession(current): RequiredSession,
) -> Result<HttpResponse, PageError> {
    check_csrf_token(&current, &form.csrf_token)?;
    let factor = Uuid::parse_str(&path.into_inner()).map_err(|_| PageError::NotFound)?;
    let actor = actor(request_ip(&req, &state));
    let renamed = state
        .auth
        .factors
        .rename(
            current.user.id,
            factor,
            &form.name,
            state.auth.clock.now(),
            &actor,
        )
        .await?;
    if !renamed {
        return Err(PageError::NotFound);
    }
    Ok(Notice::FactorRenamed.redirect())
}
