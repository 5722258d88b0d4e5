//! `POST /logout`: ends the browser session server-side and clears the cookie.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{actor, check_same_origin, request_ip};
use crate::domain::secret::constant_time_eq;
use crate::http::AppState;
use crate::http::cookies::{self, removal};
use crate::http::error::PageError;
use crate::http::form::StrictForm;

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf_token: String,
}

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<LogoutForm>,
) -> Result<HttpResponse, PageError> {
    check_same_origin(&req, &state.issuer_origin)?;
    let cookie = cookies::read(&req, &state.cookies.session);
    if let Some(current) = state.auth.current_session(cookie.as_deref()).await? {
        if !constant_time_eq(&current.csrf_token(), &form.csrf_token) {
            return Err(PageError::Forbidden(
                "This sign-out request could not be verified. Please use the button on your \
                 account page."
                    .into(),
            ));
        }
        let actor = actor(request_ip(&req, &state));
        state.auth.logout(&current, &actor).await?;
    }
    Ok(signed_out(&state))
}

/// Back to the sign-in page, telling the browser to forget the session cookie.
pub fn signed_out(state: &AppState) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", "/login?signed_out=1"))
        .cookie(removal(&state.cookies.session))
        .finish()
}
