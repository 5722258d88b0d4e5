//! `GET`/`POST /authorize` and `GET /authorize/resume` (after sign-in).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{actor, request_ip};
use crate::app::AppState;
use crate::domain::secret::{OpaqueToken, kind};
use crate::http::cookies::binding_cookie;
use crate::http::error::PageError;
use crate::http::extract::{Binding, OptionalSession};
use crate::http::form::{StrictForm, StrictQuery};
use crate::http::pages::{self, FormPostPage};
use crate::oauth::authorize::{AuthorizeOutcome, ClientReply, ResponseMode};
use crate::oauth::error::EndpointError;

pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictQuery(params): StrictQuery<HashMap<String, String>>,
    binding: Binding,
    OptionalSession(session): OptionalSession,
) -> Result<HttpResponse, PageError> {
    let actor = actor(request_ip(&req, &state));
    let outcome = state
        .provider
        .authorize(&params, session.as_ref(), &binding.token, &actor)
        .await
        .map_err(internal)?;
    let set_binding = binding.is_new.then_some(&binding.token);
    respond(outcome, StatusCode::FOUND, set_binding, &state)
}

/// OpenID Connect Core §3.1.2.1: the request may also be sent as a form post. It comes
/// from the client's site, so the browser sends no `SameSite=Lax` cookies with it: answer
/// with a 303 to the same request as a GET, a top-level navigation that carries them.
pub async fn post(
    StrictForm(params): StrictForm<HashMap<String, String>>,
) -> Result<HttpResponse, PageError> {
    let mut pairs: Vec<(String, String)> = params.into_iter().collect();
    pairs.sort();
    let query =
        serde_urlencoded::to_string(&pairs).map_err(|e| PageError::BadRequest(e.to_string()))?;
    Ok(redirect_to(
        StatusCode::SEE_OTHER,
        &format!("/authorize?{query}"),
    ))
}

#[derive(Deserialize)]
pub struct ResumeQuery {
    tx: String,
}

pub async fn resume(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictQuery(query): StrictQuery<ResumeQuery>,
    binding: Binding,
    OptionalSession(session): OptionalSession,
) -> Result<HttpResponse, PageError> {
    let Some(tx) = OpaqueToken::parse(&query.tx) else {
        return Err(PageError::BadRequest(
            "This sign-in request is not valid.".into(),
        ));
    };
    let actor = actor(request_ip(&req, &state));
    let outcome = state
        .provider
        .resume(&tx, session.as_ref(), &binding.token, &actor)
        .await
        .map_err(internal)?;
    respond(outcome, StatusCode::SEE_OTHER, None, &state)
}

/// `POST /consent`'s and `/authorize`'s way of answering.
pub fn respond(
    outcome: AuthorizeOutcome,
    redirect: StatusCode,
    set_binding: Option<&OpaqueToken<kind::BrowserBinding>>,
    state: &AppState,
) -> Result<HttpResponse, PageError> {
    let mut res = match outcome {
        AuthorizeOutcome::Refused(message) => return Err(PageError::AuthorizeRefused(message)),
        AuthorizeOutcome::Reply(reply) => reply_to_client(&reply, redirect),
        AuthorizeOutcome::Login { tx } => {
            redirect_to(redirect, &format!("/login?tx={}", tx.expose()))
        }
        AuthorizeOutcome::Consent { tx } => {
            redirect_to(redirect, &format!("/consent?tx={}", tx.expose()))
        }
    };
    if let Some(binding) = set_binding {
        let _ = res.add_cookie(&binding_cookie(&state.cookies, binding.expose()));
    }
    Ok(res)
}

fn redirect_to(status: StatusCode, location: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The authorization response, by redirect (query) or by self-submitting form.
pub fn reply_to_client(reply: &ClientReply, redirect: StatusCode) -> HttpResponse {
    match reply.mode {
        ResponseMode::Query => redirect_to(redirect, &reply.location()),
        ResponseMode::FormPost => {
            let html = pages::render(&FormPostPage {
                css_href: pages::css_href(),
                action: reply.redirect_uri.as_str(),
                params: &reply.params,
            });
            let csp = pages::csp_with_form_target(reply.form_action_source().as_deref());
            pages::html_builder(StatusCode::OK)
                .insert_header(("Content-Security-Policy", csp))
                .body(html)
        }
    }
}

pub fn internal(e: EndpointError) -> PageError {
    match e {
        EndpointError::OAuth(e) => PageError::BadRequest(e.description),
        EndpointError::Throttled { retry_after } => PageError::TooManyRequests { retry_after },
        EndpointError::Unavailable { retry_after, cause } => {
            tracing::warn!(error = %cause, "database unavailable");
            PageError::Unavailable { retry_after }
        }
        EndpointError::Internal(cause) => PageError::Internal(cause),
    }
}
