//! The second step of sign-in: `POST /login/second-factor` hands the code to
//! `auth::Authenticator::second_factor` and renders the outcome; the code form is also
//! what `GET /login` shows for a transaction waiting for its second factor.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::login::{browser, client_context, expired_form, pending_request, signed_in};
use super::{actor, request_ip, see_other};
use crate::app::AppState;
use crate::auth::{
    Authenticator, LiveForm, LoginOutcome, SecondFactorForm, SecondFactorRequest, SignInOutcome,
};
use crate::domain::mfa::CodeRejection;
use crate::domain::secret::{OpaqueToken, kind};
use crate::http::error::{PageError, sentence};
use crate::http::extract::{Binding, SameOrigin, SessionCookie};
use crate::http::form::StrictForm;
use crate::http::pages::{self, SecondFactorPage};
use crate::oauth::authorize::RESUME_PATH;

/// The same words for a wrong code, a code used before, and any code after a wrong
/// password: the page tells nothing more to someone without the factor.
const CODE_DID_NOT_WORK: &str = "That code didn't work. Check your authenticator app and enter the current code; each code works once.";

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<SecondFactorForm>,
    _: SameOrigin,
    binding: Binding,
    login_cookie: SessionCookie,
) -> Result<HttpResponse, PageError> {
    let ip = request_ip(&req, &state);
    let actor = actor(ip);
    let request =
        SecondFactorRequest::parse(form, browser(&req, ip, &actor, &binding, &login_cookie));
    match state.auth.second_factor(request).await? {
        SignInOutcome::Expired(fresh) => expired_form(&state, fresh, binding),
        SignInOutcome::Checked { form, outcome, .. } => {
            render_outcome(&state, *form, binding.token, outcome).await
        }
    }
}

/// The answer to a live code form (or a password form that led to it).
pub(super) async fn render_outcome(
    state: &AppState,
    form: LiveForm,
    binding: OpaqueToken<kind::BrowserBinding>,
    outcome: LoginOutcome,
) -> Result<HttpResponse, PageError> {
    let request = pending_request(&form.transaction);
    let resume = |return_to: String| match request {
        Some(_) => format!("{RESUME_PATH}?tx={}", form.tx.expose()),
        None => return_to,
    };
    let (status, error, code_error, retry_after) = match outcome {
        LoginOutcome::Success {
            cookie,
            session,
            return_to,
        } => return Ok(signed_in(state, &cookie, &session, &resume(return_to))),
        LoginOutcome::SteppedUp { return_to } => return Ok(see_other(&resume(return_to))),
        LoginOutcome::SecondFactor => (StatusCode::OK, None, None, None),
        LoginOutcome::CodeMissing => (
            StatusCode::OK,
            None,
            Some("Enter the code from your authenticator app.".to_owned()),
            None,
        ),
        LoginOutcome::CodeRejected(CodeRejection::Malformed) => (
            StatusCode::OK,
            None,
            Some(
                "Enter the 6 digits your authenticator app shows, or use a recovery code."
                    .to_owned(),
            ),
            None,
        ),
        LoginOutcome::CodeRejected(_) | LoginOutcome::Rejected(_) => (
            StatusCode::OK,
            None,
            Some(CODE_DID_NOT_WORK.to_owned()),
            None,
        ),
        LoginOutcome::Throttled { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many failed attempts. Please try again in {}.",
                super::login::describe_wait(retry_after)
            )),
            None,
            Some(retry_after),
        ),
        LoginOutcome::PasskeyRejected(problem) => (
            StatusCode::BAD_REQUEST,
            Some(sentence(&problem.to_string())),
            None,
            None,
        ),
        LoginOutcome::Incomplete(_) => (StatusCode::OK, None, None, None),
    };
    let client = client_context(state, request.as_ref()).await?;
    // The form was loaded before the password step parked it: read the step again.
    let step = match &form.transaction.second_step {
        Some(step) => Some(step.clone()),
        None => state
            .auth
            .load_login(&form.tx, &binding)
            .await?
            .and_then(|t| t.second_step),
    };
    let passkey = match &step {
        Some(step) => offers_passkey(state, step).await?,
        None => false,
    };
    Ok(render_form(
        &form.tx,
        &binding,
        client.as_ref(),
        passkey,
        status,
        error.as_deref(),
        code_error.as_deref(),
        retry_after,
    ))
}

/// Whether the code form offers "Use your passkey": the user has one. It is offered
/// whatever the verdict on the password (the page is the same either way).
pub(super) async fn offers_passkey(
    state: &AppState,
    step: &crate::domain::mfa::SecondStep,
) -> Result<bool, PageError> {
    let factors = &state.auth.factors;
    Ok(factors.passkeys_available() && !factors.passkeys(step.user_id).await?.is_empty())
}

/// The code form of transaction `tx`.
#[allow(clippy::too_many_arguments)]
pub(super) fn render_form(
    tx: &OpaqueToken<kind::LoginTransaction>,
    binding: &OpaqueToken<kind::BrowserBinding>,
    client: Option<&(String, Option<String>)>,
    passkey: bool,
    status: StatusCode,
    error: Option<&str>,
    code_error: Option<&str>,
    retry_after: Option<u64>,
) -> HttpResponse {
    let csrf = Authenticator::login_csrf_token(tx, binding);
    let html = pages::render(&SecondFactorPage {
        css_href: pages::css_href(),
        tx: tx.expose(),
        csrf_token: &csrf,
        error,
        code_error,
        client_name: client.map(|(name, _)| name.as_str()),
        passkey,
    });
    let mut builder = pages::html_builder(status);
    let target = client.and_then(|(_, t)| t.as_deref());
    if passkey {
        let csp = pages::csp_with_form_target(target);
        builder.insert_header(("Content-Security-Policy", pages::csp_with_fetch_self(&csp)));
    } else if client.is_some() {
        builder.insert_header((
            "Content-Security-Policy",
            pages::csp_with_form_target(target),
        ));
    }
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        builder.insert_header((header::RETRY_AFTER, v));
    }
    builder.body(html)
}
