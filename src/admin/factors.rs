//! `/admin/v1/users/{user_id}/factors` and the user's recovery codes, through the same
//! `auth::Factors` functions as `portcullis users mfa …`. A new TOTP secret and new
//! recovery codes are in the response once; nothing shows them again.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::AdminCaller;
use super::error::ApiError;
use super::users::find;
use super::{not_an_id, now};
use crate::app::AppState;
use crate::auth::{FactorList, ProvisionedTotp};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTotpBody {
    /// The factor's name in the user's list (default "Authenticator app").
    #[schema(example = "Work phone")]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemovedFactors {
    /// How many factors were removed (every recovery code went too).
    pub removed: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodeSet {
    /// The new codes, shown once; the previous set no longer works.
    pub recovery_codes: Vec<String>,
}

/// A user's confirmed second factors and how many recovery codes are left.
#[utoipa::path(
    tag = "factors",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user's factors", body = FactorList),
        (status = 404, description = "No such user"),
    )
)]
#[get("/users/{user_id}/factors")]
pub async fn list_factors(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<FactorList>, ApiError> {
    let user = find(&state, &path).await?;
    Ok(web::Json(state.auth.factors.overview(user.id).await?))
}

/// Enroll an authenticator app for a user (provisioning): confirmed at once. The secret,
/// and for a first factor the recovery codes, are shown this once.
#[utoipa::path(
    tag = "factors",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    request_body = NewTotpBody,
    responses(
        (status = 201, description = "Enrolled", body = ProvisionedTotp),
        (status = 400, description = "The body is not valid JSON for this schema"),
        (status = 404, description = "No such user"),
    )
)]
#[post("/users/{user_id}/factors/totp")]
pub async fn enroll_totp(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
    body: web::Json<NewTotpBody>,
) -> Result<HttpResponse, ApiError> {
    let user = find(&state, &path).await?;
    let name = body.into_inner().name;
    let enrolled: ProvisionedTotp = state
        .auth
        .factors
        .enroll_totp_for(&user, name.as_deref(), now(&state), &caller.actor)
        .await?
        .into();
    Ok(HttpResponse::Created().json(enrolled))
}

/// Remove one second factor of a user; the recovery codes go with the last one.
#[utoipa::path(
    tag = "factors",
    params(
        ("user_id" = Uuid, Path, description = "The user's id"),
        ("factor_id" = Uuid, Path, description = "The factor's id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such user, or no such factor of the user"),
    )
)]
#[delete("/users/{user_id}/factors/{factor_id}")]
pub async fn remove_factor(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, factor) = path.into_inner();
    // A malformed id cannot name a factor (and `totp` is the enrollment route).
    let factor = Uuid::parse_str(&factor).map_err(|_| not_an_id(&req, "factor"))?;
    let user = find(&state, &user).await?;
    if !state
        .auth
        .factors
        .remove(user.id, factor, now(&state), &caller.actor)
        .await?
    {
        return Err(ApiError::not_found("factor"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Remove every second factor and recovery code of a user (a lost phone).
#[utoipa::path(
    tag = "factors",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "How many factors were removed", body = RemovedFactors),
        (status = 404, description = "No such user"),
    )
)]
#[delete("/users/{user_id}/factors")]
pub async fn reset_factors(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
) -> Result<web::Json<RemovedFactors>, ApiError> {
    let user = find(&state, &path).await?;
    let removed = state
        .auth
        .factors
        .reset(user.id, now(&state), &caller.actor)
        .await?;
    Ok(web::Json(RemovedFactors { removed }))
}

/// Replace a user's recovery codes with a new set, shown this once.
#[utoipa::path(
    tag = "factors",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 201, description = "The new recovery codes", body = RecoveryCodeSet),
        (status = 404, description = "No such user"),
        (status = 409, description = "The user has no second factor"),
    )
)]
#[post("/users/{user_id}/recovery-codes")]
pub async fn regenerate_recovery_codes(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = find(&state, &path).await?;
    let recovery_codes = state
        .auth
        .factors
        .regenerate_recovery_codes(user.id, now(&state), &caller.actor)
        .await?;
    Ok(HttpResponse::Created().json(RecoveryCodeSet { recovery_codes }))
}
