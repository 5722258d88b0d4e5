//! `GET`/`POST /userinfo` with a bearer token (RFC 6750 §2.1 header, §2.2 form body).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::AppState;
use crate::http::cors;
use crate::http::error::BearerError;
use crate::http::extract::BearerToken;

pub async fn userinfo(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: BearerToken,
) -> HttpResponse {
    cors::with_cors(&req, &state.origins, handle(&state, token)).await
}

async fn handle(state: &AppState, token: BearerToken) -> Result<HttpResponse, BearerError> {
    let claims = state.provider.userinfo(&token.into_result()?).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(claims))
}
