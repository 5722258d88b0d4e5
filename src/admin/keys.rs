//! `/admin/v1/keys`: the signing keys (never their private halves), rotation and
//! emergency retirement, through the same key ring as `portcullis keys …`.

use actix_web::{get, post, web};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::auth::AdminCaller;
use super::error::ApiError;
use crate::app::AppState;
use crate::keys::{RetireOutcome, RotationOutcome};

/// A signing key's public facts: the key layer's own view (`keys::KeyInfo`), which
/// keeps private material out.
pub use crate::keys::KeyInfo as KeyView;

/// What a rotation did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rotation {
    /// The algorithm whose keys rotated (each configured algorithm rotates).
    #[schema(example = "RS256")]
    pub alg: String,
    /// `rotated`, or `lost_race` when another instance rotated at the same moment.
    #[schema(example = "rotated")]
    pub outcome: &'static str,
    /// The key that was current and is now retired.
    pub retired: Option<String>,
    /// The key that signs from now on.
    pub current: Option<String>,
    /// The newly published next key.
    pub next: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub remove_after: Option<OffsetDateTime>,
}

/// What an emergency retirement did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retirement {
    pub kid: String,
    /// The state the key was in before.
    pub previous_state: String,
    /// The key promoted to current, when the retired key was current.
    pub promoted: Option<String>,
    pub next: Option<String>,
}

/// Every signing key with its state and dates, oldest first.
#[utoipa::path(
    tag = "keys",
    responses((status = 200, description = "The signing keys", body = Vec<KeyView>))
)]
#[get("/keys")]
pub async fn list_keys(state: web::Data<AppState>) -> Result<web::Json<Vec<KeyView>>, ApiError> {
    let keys = crate::keys::list(state.provider.store.as_ref()).await?;
    Ok(web::Json(keys))
}

/// Rotate now: next → current, current → retired (published until its tokens expire), a
/// new next key. Other instances pick it up within `keys.reload_interval`.
#[utoipa::path(
    tag = "keys",
    responses((status = 200, description = "One rotation per configured algorithm", body = Vec<Rotation>))
)]
#[post("/keys/rotate")]
pub async fn rotate_keys(
    state: web::Data<AppState>,
    caller: AdminCaller,
) -> Result<web::Json<Vec<Rotation>>, ApiError> {
    let outcomes = state.provider.keys.rotate_by(&caller.actor).await?;
    let rotations = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            RotationOutcome::Rotated {
                alg,
                retired,
                current,
                next,
                remove_after,
            } => Rotation {
                alg: alg.as_str().to_owned(),
                outcome: "rotated",
                retired: Some(retired),
                current: Some(current),
                next,
                remove_after: Some(remove_after),
            },
            RotationOutcome::LostRace { alg, current } => Rotation {
                alg: alg.as_str().to_owned(),
                outcome: "lost_race",
                retired: None,
                current,
                next: None,
                remove_after: None,
            },
        })
        .collect();
    Ok(web::Json(rotations))
}

/// Emergency (a compromised key): unpublish the key at once; tokens it signed stop
/// verifying. If it was current, next is promoted.
#[utoipa::path(
    tag = "keys",
    params(("kid" = String, Path, description = "The key id")),
    responses(
        (status = 200, description = "Retired", body = Retirement),
        (status = 404, description = "No such key"),
    )
)]
#[post("/keys/{kid}/retire")]
pub async fn retire_key(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
) -> Result<web::Json<Retirement>, ApiError> {
    let kid = path.into_inner();
    if kid.len() > 128 {
        return Err(ApiError::not_found("key"));
    }
    match state.provider.keys.retire(&kid, &caller.actor).await? {
        RetireOutcome::Retired {
            kid,
            previous_state,
            promoted,
            next,
        } => Ok(web::Json(Retirement {
            kid,
            previous_state: previous_state.to_string(),
            promoted,
            next,
        })),
        RetireOutcome::NotFound { .. } => Err(ApiError::not_found("key")),
    }
}
