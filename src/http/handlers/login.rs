//! `GET /login` shows the sign-in form; `POST /login` checks it.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{actor, request_ip, see_other};
use crate::app::AppState;
use crate::auth::{Authenticator, LoginAttempt, LoginOutcome};
use crate::domain::client::ClientId;
use crate::domain::secret::OpaqueToken;
use crate::domain::user::Password;
use crate::http::cookies::{binding_cookie, session_cookie};
use crate::http::error::PageError;
use crate::http::extract::{Binding, SameOrigin, SessionCookie};
use crate::http::form::{StrictForm, StrictQuery};
use crate::http::pages::{self, LoginPage};
use crate::oauth::authorize::{AuthorizationRequest, RESUME_PATH};

/// Where a plain sign-in (not part of an authorization request) lands.
const DEFAULT_RETURN_TO: &str = "/account";

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    tx: Option<String>,
    signed_out: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    tx: String,
    csrf_token: String,
    username: String,
    password: String,
}

/// What a rendered form needs besides its messages.
struct FormContext {
    tx: OpaqueToken,
    binding: OpaqueToken,
    set_binding: bool,
    /// For a sign-in within an authorization request: the client's name, and the CSP
    /// source of its redirect URI (the form's redirect chain ends there).
    client: Option<(String, Option<String>)>,
}

/// The authorization request a transaction carries, if any.
fn pending_request(tx: &crate::storage::LoginTransaction) -> Option<AuthorizationRequest> {
    tx.request
        .clone()
        .and_then(|v| serde_json::from_value::<AuthorizationRequest>(v).ok())
}

async fn client_context(
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
    let hint = request
        .as_ref()
        .and_then(|r| r.login_hint.clone())
        .unwrap_or_default();
    let tx = match pending {
        Some((tx, _)) => tx,
        None => {
            auth.may_open_form(request_ip(&req, &state))
                .map_err(|retry_after| PageError::TooManyRequests { retry_after })?;
            auth.start_login(&binding, DEFAULT_RETURN_TO, None).await?
        }
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
    StrictForm(form): StrictForm<LoginForm>,
    _: SameOrigin,
    binding: Binding,
    login_cookie: SessionCookie,
) -> Result<HttpResponse, PageError> {
    let auth = &state.auth;
    let tx_id = OpaqueToken::parse(&form.tx);
    // A new binding means the browser sent none: no form of ours can be bound to it.
    let transaction = match &tx_id {
        Some(tx)
            if !binding.is_new
                && Authenticator::check_login_csrf(tx, &binding.token, &form.csrf_token) =>
        {
            auth.load_login(tx, &binding.token).await?
        }
        _ => None,
    };
    let (Some(tx_id), Some(transaction)) = (tx_id, transaction) else {
        return expired_form(&req, &state, binding).await;
    };
    let request = pending_request(&transaction);
    let ctx = FormContext {
        tx: tx_id,
        binding: binding.token,
        set_binding: false,
        client: client_context(&state, request.as_ref()).await?,
    };

    let username = form.username.trim();
    if username.is_empty() || form.password.is_empty() {
        return Ok(render_form(
            &state,
            StatusCode::OK,
            &ctx,
            &Messages {
                username,
                username_error: username.is_empty().then_some("Enter your username."),
                password_error: form.password.is_empty().then_some("Enter your password."),
                ..Messages::default()
            },
            None,
        ));
    }

    let ip = request_ip(&req, &state);
    let actor = actor(ip);
    let old_session = login_cookie.token().map(|t| t.hash());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let outcome = auth
        .login(LoginAttempt {
            transaction: &transaction,
            username,
            password: Password::presented(form.password).unwrap_or_else(|_| Password::empty()),
            ip,
            user_agent,
            actor: &actor,
            replaces: old_session,
        })
        .await?;
    match outcome {
        LoginOutcome::Success {
            cookie,
            session,
            return_to,
        } => {
            let max_age = session.remaining_absolute(auth.clock.now()).whole_seconds();
            // The return path was chosen by the server; still refuse anything but a plain
            // local path (browsers read `/\evil` as `//evil`). An authorization request
            // continues where it stopped.
            let target = if request.is_some() {
                format!("{RESUME_PATH}?tx={}", ctx.tx.expose())
            } else if is_local_path(&return_to) {
                return_to
            } else {
                DEFAULT_RETURN_TO.to_owned()
            };
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, target))
                .cookie(session_cookie(&state.cookies, cookie.expose(), max_age))
                .finish())
        }
        LoginOutcome::Rejected(_) => Ok(render_form(
            &state,
            StatusCode::OK,
            &ctx,
            &Messages {
                username,
                error: Some("Incorrect username or password."),
                ..Messages::default()
            },
            None,
        )),
        LoginOutcome::Throttled { retry_after } => {
            let message = format!(
                "Too many failed sign-in attempts. Please try again in {}.",
                describe_wait(retry_after)
            );
            Ok(render_form(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &ctx,
                &Messages {
                    username,
                    error: Some(&message),
                    ..Messages::default()
                },
                Some(retry_after),
            ))
        }
    }
}

/// A post whose form is unknown, expired, used, served to another browser or missing its
/// CSRF token: nothing happens except that a fresh form is shown.
async fn expired_form(
    req: &HttpRequest,
    state: &AppState,
    Binding {
        token: binding,
        is_new: set_binding,
    }: Binding,
) -> Result<HttpResponse, PageError> {
    state
        .auth
        .may_open_form(request_ip(req, state))
        .map_err(|retry_after| PageError::TooManyRequests { retry_after })?;
    let tx = state
        .auth
        .start_login(&binding, DEFAULT_RETURN_TO, None)
        .await?;
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
    });
    let mut builder = pages::html_builder(status);
    if let Some((_, target)) = &ctx.client {
        builder.insert_header((
            "Content-Security-Policy",
            pages::csp_with_form_target(target.as_deref()),
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

/// `/path…`, but not `//host`, `/\\host` or anything with control characters.
fn is_local_path(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target.contains('\\')
        && !target.chars().any(char::is_control)
}

fn describe_wait(secs: u64) -> String {
    match secs {
        0..=60 => "a minute".to_owned(),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::is_local_path;

    #[test]
    fn only_plain_local_paths_are_redirect_targets() {
        assert!(is_local_path("/account"));
        assert!(is_local_path("/authorize/resume?tx=abc"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "account",
            "/a\nb",
            "",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
