//! `POST /login/second-factor` hands the code to `auth::Authenticator::second_factor`;
//! the code form and its outcomes are rendered by `login.rs` (which `GET /login` also
//! uses for a transaction waiting for its second factor).

use actix_web::{HttpRequest, HttpResponse, web};

use super::login::{browser, expired_form, render_code_outcome};
use super::{actor, request_ip};
use crate::app::AppState;
use crate::auth::{SecondFactorForm, SecondFactorRequest, SignInOutcome};
use crate::http::error::PageError;
use crate::http::extract::{Binding, SameOrigin, SessionCookie};
use crate::http::form::StrictForm;

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
            render_code_outcome(&state, *form, binding.token, outcome).await
        }
    }
}
