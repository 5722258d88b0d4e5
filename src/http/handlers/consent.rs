//! `GET /consent` asks the user; `POST /consent` records the answer.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::authorize::{internal, respond};
use super::{actor, request_ip, see_other};
use crate::app::AppState;
use crate::auth::CurrentSession;
use crate::domain::scope;
use crate::domain::secret::{OpaqueToken, constant_time_eq, kind};
use crate::http::error::PageError;
use crate::http::extract::{Binding, OptionalSession, SameOrigin};
use crate::http::form::{StrictForm, StrictQuery};
use crate::http::pages::{self, ConsentPage};
use crate::oauth::authorize::Pending;

#[derive(Deserialize)]
pub struct ConsentQuery {
    tx: String,
}

#[derive(Deserialize)]
pub struct ConsentForm {
    tx: String,
    csrf_token: String,
    decision: String,
}

fn csrf_token(session: &CurrentSession, tx: &OpaqueToken<kind::LoginTransaction>) -> String {
    session.token.derive("consent-csrf", tx.expose())
}

/// The signed-in user and the request awaiting their answer, if both are still there.
async fn load(
    state: &AppState,
    tx: &str,
    session: Option<CurrentSession>,
    binding: &Binding,
) -> Result<Option<(CurrentSession, Pending)>, PageError> {
    let Some(tx) = OpaqueToken::parse(tx) else {
        return Ok(None);
    };
    let Some(session) = session else {
        return Ok(None);
    };
    let pending = state
        .provider
        .pending(&tx, &binding.token)
        .await
        .map_err(internal)?;
    Ok(pending.map(|p| (session, p)))
}

fn expired() -> PageError {
    PageError::AuthorizeRefused(
        "This request has expired or was already answered. Please return to the application \
         and start again."
            .into(),
    )
}

pub async fn show(
    state: web::Data<AppState>,
    StrictQuery(query): StrictQuery<ConsentQuery>,
    binding: Binding,
    OptionalSession(session): OptionalSession,
) -> Result<HttpResponse, PageError> {
    let Some((session, pending)) = load(&state, &query.tx, session, &binding).await? else {
        return Err(expired());
    };
    if let Some(path) = state.provider.consent_detour(&pending, &session) {
        return Ok(see_other(&path));
    }
    let scopes: Vec<String> = pending
        .request
        .consent_scope()
        .iter()
        .map(scope::describe)
        .collect();
    let redirect_url = pending.request.redirect_uri.url();
    let redirect_host = redirect_url
        .host_str()
        .unwrap_or(redirect_url.scheme())
        .to_owned();
    let csrf = csrf_token(&session, &pending.tx);
    let html = pages::render(&ConsentPage {
        css_href: pages::css_href(),
        tx: pending.tx.expose(),
        csrf_token: &csrf,
        client_name: &pending.client.name,
        username: session.user.username.as_str(),
        scopes: &scopes,
        redirect_host: &redirect_host,
    });
    let csp = pages::csp_with_form_target(Some(&pending.request.redirect_uri.form_action_source()));
    Ok(pages::html_builder(StatusCode::OK)
        .insert_header(("Content-Security-Policy", csp))
        .body(html))
}

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<ConsentForm>,
    _: SameOrigin,
    binding: Binding,
    OptionalSession(session): OptionalSession,
) -> Result<HttpResponse, PageError> {
    let Some((session, pending)) = load(&state, &form.tx, session, &binding).await? else {
        return Ok(see_other("/login"));
    };
    // SECURITY: bound to this session and this request, compared in constant time.
    if !constant_time_eq(&csrf_token(&session, &pending.tx), &form.csrf_token) {
        return Err(PageError::Forbidden(
            "This request could not be verified. Please go back and try again.".into(),
        ));
    }
    let allow = match form.decision.as_str() {
        "allow" => true,
        "deny" => false,
        _ => return Err(PageError::BadRequest("Choose Allow or Deny.".into())),
    };
    let actor = actor(request_ip(&req, &state));
    let outcome = state
        .provider
        .decide_consent(pending, &session, allow, &actor)
        .await
        .map_err(internal)?;
    respond(outcome, StatusCode::SEE_OTHER, None, &state)
}
