//! `GET /login` shows the sign-in form; `POST /login` hands it to
//! `auth::Authenticator::sign_in` and renders the outcome.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{actor, request_ip, see_other};
use crate::app::AppState;
use crate::auth::{
    Authenticator, Browser, DEFAULT_RETURN_TO, LiveForm, LoginOutcome, SignInForm, SignInOutcome,
    SignInRequest,
};
use crate::domain::client::ClientId;
use crate::domain::mfa::CodeRejection;
use crate::domain::secret::{OpaqueToken, kind};
use crate::domain::session::BrowserSession;
use crate::http::cookies::{binding_cookie, session_cookie};
use crate::http::error::{PageError, sentence};
use crate::http::extract::{Binding, SameOrigin, SessionCookie};
use crate::http::form::{StrictForm, StrictQuery};
use crate::http::pages::{self, LoginPage, SecondFactorPage};
use crate::oauth::authorize::{AuthorizationRequest, RESUME_PATH};

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    tx: Option<String>,
    signed_out: Option<String>,
}

/// What a rendered form needs besides its messages.
struct FormContext {
    tx: OpaqueToken<kind::LoginTransaction>,
    binding: OpaqueToken<kind::BrowserBinding>,
    set_binding: bool,
    /// For a sign-in within an authorization request: the client's name, and the CSP
    /// source of its redirect URI (the form's redirect chain ends there).
    client: Option<(String, Option<String>)>,
}

/// The authorization request a transaction carries, if any.
pub(super) fn pending_request(
    tx: &crate::storage::LoginTransaction,
) -> Option<AuthorizationRequest> {
    tx.request
        .clone()
        .and_then(|v| serde_json::from_value::<AuthorizationRequest>(v).ok())
}

pub(super) async fn client_context(
    state: &AppState,
    request: Option<&AuthorizationRequest>,
) -> Result<Option<(String, Option<String>)>, PageError> {
    let Some(request) = request else {
        return Ok(None);
    };
    let Ok(id) = ClientId::parse(&request.client_id) else {
        return Ok(None);
    };
    let name = state
        .auth
        .store
        .find_client(&id)
        .await?
        .map_or_else(|| request.client_id.clone(), |c| c.name);
    Ok(Some((
        name,
        Some(request.redirect_uri.form_action_source()),
    )))
}

#[derive(Default)]
struct Messages<'a> {
    username: &'a str,
    error: Option<&'a str>,
    username_error: Option<&'a str>,
    password_error: Option<&'a str>,
    notice: Option<&'a str>,
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictQuery(query): StrictQuery<LoginQuery>,
    Binding {
        token: binding,
        is_new: set_binding,
    }: Binding,
    login_cookie: SessionCookie,
) -> Result<HttpResponse, PageError> {
    let auth = &state.auth;
    let pending = match query.tx.as_deref().and_then(OpaqueToken::parse) {
        Some(tx) => auth.load_login(&tx, &binding).await?.map(|t| (tx, t)),
        None => None,
    };
    // Only a plain visit looks the session up (and so counts as activity).
    if pending.is_none() && login_cookie.session(auth).await?.is_some() {
        return Ok(see_other(DEFAULT_RETURN_TO));
    }
    let request = pending.as_ref().and_then(|(_, t)| pending_request(t));
    let client = client_context(&state, request.as_ref()).await?;
    // A transaction past its password step (or a step-up) asks for the second factor.
    if let Some((tx, t)) = &pending
        && let Some(step) = &t.second_step
    {
        let passkey = offers_passkey(&state, step).await?;
        return Ok(render_code_form(
            tx,
            &binding,
            client.as_ref(),
            passkey,
            StatusCode::OK,
            None,
            None,
            None,
        ));
    }
    let hint = request
        .as_ref()
        .and_then(|r| r.login_hint.clone())
        .unwrap_or_default();
    let tx = match pending {
        Some((tx, _)) => tx,
        None => auth
            .open_form(&binding, request_ip(&req, &state))
            .await?
            .map_err(|retry_after| PageError::TooManyRequests { retry_after })?,
    };
    let notice = query
        .signed_out
        .is_some()
        .then_some("You have been signed out.");
    Ok(render_form(
        &state,
        StatusCode::OK,
        &FormContext {
            tx,
            binding,
            set_binding,
            client,
        },
        &Messages {
            notice,
            username: &hint,
            ..Messages::default()
        },
        None,
    ))
}

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<SignInForm>,
    _: SameOrigin,
    binding: Binding,
    login_cookie: SessionCookie,
) -> Result<HttpResponse, PageError> {
    let ip = request_ip(&req, &state);
    let actor = actor(ip);
    let request = SignInRequest::parse(form, browser(&req, ip, &actor, &binding, &login_cookie));
    match state.auth.sign_in(request).await? {
        SignInOutcome::Expired(fresh) => expired_form(&state, fresh, binding),
        SignInOutcome::Checked {
            form,
            username,
            outcome,
        } => render_outcome(&state, *form, binding.token, &username, outcome).await,
    }
}

/// What a posted sign-in form (password or code) says about the browser.
pub(super) fn browser<'a>(
    req: &'a HttpRequest,
    ip: Option<std::net::IpAddr>,
    actor: &'a crate::audit::Actor,
    binding: &'a Binding,
    login_cookie: &SessionCookie,
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

/// The answer to a form that was live: signed in, or the form again with a message.
pub(super) async fn render_outcome(
    state: &AppState,
    form: LiveForm,
    binding: OpaqueToken<kind::BrowserBinding>,
    username: &str,
    outcome: LoginOutcome,
) -> Result<HttpResponse, PageError> {
    if matches!(
        outcome,
        LoginOutcome::SecondFactor
            | LoginOutcome::CodeMissing
            | LoginOutcome::CodeRejected(_)
            | LoginOutcome::SteppedUp { .. }
    ) {
        return render_code_outcome(state, form, binding, outcome).await;
    }
    let request = pending_request(&form.transaction);
    let throttled;
    let passkey_error;
    let (status, messages, retry_after) = match outcome {
        LoginOutcome::Success {
            cookie,
            session,
            return_to,
        } => {
            // An authorization request continues where it stopped.
            let target = match request {
                Some(_) => format!("{RESUME_PATH}?tx={}", form.tx.expose()),
                None => return_to,
            };
            return Ok(signed_in(state, &cookie, &session, &target));
        }
        LoginOutcome::Incomplete(missing) => (
            StatusCode::OK,
            Messages {
                username,
                username_error: missing.username.then_some("Enter your username."),
                password_error: missing.password.then_some("Enter your password."),
                ..Messages::default()
            },
            None,
        ),
        LoginOutcome::Rejected(_) => (
            StatusCode::OK,
            Messages {
                username,
                error: Some("Incorrect username or password."),
                ..Messages::default()
            },
            None,
        ),
        LoginOutcome::PasskeyRejected(problem) => {
            passkey_error = sentence(&problem.to_string());
            let messages = Messages {
                username,
                error: Some(&passkey_error),
                ..Messages::default()
            };
            (StatusCode::BAD_REQUEST, messages, None)
        }
        LoginOutcome::Throttled { retry_after } => {
            throttled = format!(
                "Too many failed sign-in attempts. Please try again in {}.",
                describe_wait(retry_after)
            );
            let messages = Messages {
                username,
                error: Some(&throttled),
                ..Messages::default()
            };
            (StatusCode::TOO_MANY_REQUESTS, messages, Some(retry_after))
        }
        // Sent to the code form above.
        LoginOutcome::SecondFactor
        | LoginOutcome::CodeMissing
        | LoginOutcome::CodeRejected(_)
        | LoginOutcome::SteppedUp { .. } => (StatusCode::OK, Messages::default(), None),
    };
    let ctx = FormContext {
        tx: form.tx,
        binding,
        set_binding: false,
        client: client_context(state, request.as_ref()).await?,
    };
    Ok(render_form(state, status, &ctx, &messages, retry_after))
}

/// 303 to `target` with the new session's cookie, which lives as long as the session may.
pub(super) fn signed_in(
    state: &AppState,
    cookie: &OpaqueToken<kind::SessionToken>,
    session: &BrowserSession,
    target: &str,
) -> HttpResponse {
    let max_age = session
        .remaining_absolute(state.auth.clock.now())
        .whole_seconds();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, target))
        .cookie(session_cookie(&state.cookies, cookie.expose(), max_age))
        .finish()
}

/// A post whose form is unknown, expired, used, served to another browser or missing its
/// CSRF token: nothing happened except that a fresh form (`fresh`) was opened.
pub(super) fn expired_form(
    state: &AppState,
    fresh: Result<OpaqueToken<kind::LoginTransaction>, u64>,
    Binding {
        token: binding,
        is_new: set_binding,
    }: Binding,
) -> Result<HttpResponse, PageError> {
    let tx = fresh.map_err(|retry_after| PageError::TooManyRequests { retry_after })?;
    Ok(render_form(
        state,
        StatusCode::FORBIDDEN,
        &FormContext {
            tx,
            binding,
            set_binding,
            client: None,
        },
        &Messages {
            error: Some(
                "This sign-in form has expired or could not be verified. Please try again.",
            ),
            ..Messages::default()
        },
        None,
    ))
}

fn render_form(
    state: &AppState,
    status: StatusCode,
    ctx: &FormContext,
    messages: &Messages<'_>,
    retry_after: Option<u64>,
) -> HttpResponse {
    let csrf = Authenticator::login_csrf_token(&ctx.tx, &ctx.binding);
    let passkeys = state.auth.factors.passkeys_available();
    let html = pages::render(&LoginPage {
        css_href: pages::css_href(),
        tx: ctx.tx.expose(),
        csrf_token: &csrf,
        username: messages.username,
        error: messages.error,
        username_error: messages.username_error,
        password_error: messages.password_error,
        notice: messages.notice,
        client_name: ctx.client.as_ref().map(|(name, _)| name.as_str()),
        passkeys,
    });
    let mut builder = pages::html_builder(status);
    let target = ctx.client.as_ref().and_then(|(_, t)| t.as_deref());
    if passkeys {
        let csp = pages::csp_with_form_target(target);
        builder.insert_header(("Content-Security-Policy", pages::csp_with_fetch_self(&csp)));
    } else if ctx.client.is_some() {
        builder.insert_header((
            "Content-Security-Policy",
            pages::csp_with_form_target(target),
        ));
    }
    if ctx.set_binding {
        builder.cookie(binding_cookie(&state.cookies, ctx.binding.expose()));
    }
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        builder.insert_header((header::RETRY_AFTER, v));
    }
    builder.body(html)
}

pub(super) fn describe_wait(secs: u64) -> String {
    match secs {
        0..=60 => "a minute".to_owned(),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

// The code form of the second step (`second_factor.rs` posts to it).

/// The same words for a wrong code, a code used before, and any code after a wrong
/// password: the page tells nothing more to someone without the factor.
const CODE_DID_NOT_WORK: &str = "That code didn't work. Check your authenticator app and enter the current code; each code works once.";

/// The answer to a live code form (or a password form that led to it).
pub(super) async fn render_code_outcome(
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
                describe_wait(retry_after)
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
    Ok(render_code_form(
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
    step: &crate::domain::second_step::SecondStep,
) -> Result<bool, PageError> {
    let factors = &state.auth.factors;
    Ok(factors.passkeys_available() && !factors.passkeys(step.user_id).await?.is_empty())
}

/// The code form of transaction `tx`.
#[allow(clippy::too_many_arguments)]
pub(super) fn render_code_form(
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
