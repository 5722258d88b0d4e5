//! `/admin/v1/users` and their sessions, through the same functions as
//! `portcullis users …` and `portcullis sessions …`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::AdminCaller;
use super::error::ApiError;
use super::{PageParams, now, query};
use crate::app::AppState;
use crate::domain::session::{BrowserSession, SessionId};
use crate::domain::user::{Password, User, UserId, Username};
use crate::users::{self, NewAccount, ProfileChange};

/// A user account. The password hash is never shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub user_id: Uuid,
    /// Case-folded (NFKC, lower case): the name the user signs in with.
    #[schema(example = "alice")]
    pub username: String,
    #[schema(example = "alice@example.com")]
    pub email: Option<String>,
    pub email_verified: bool,
    #[schema(example = "Alice Example")]
    pub name: Option<String>,
    /// A disabled user cannot sign in.
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            user_id: u.id.0,
            username: u.username.as_str().to_owned(),
            email: u.email,
            email_verified: u.email_verified,
            name: u.name,
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    #[schema(example = "alice")]
    pub username: String,
    #[schema(example = "alice@example.com")]
    pub email: Option<String>,
    #[schema(example = "Alice Example")]
    pub name: Option<String>,
    /// At least `password.min_length` characters. Without one, the account cannot sign in
    /// until a password is set.
    #[schema(example = "correct horse battery staple")]
    pub password: Option<String>,
}

/// Absent fields stay; `null` clears `email` or `name`. A new email address starts
/// unverified unless `email_verified` is given.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    pub email_verified: Option<bool>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListParams {
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
    /// The `next_after` of the previous page (a username).
    pub after: Option<String>,
}

/// A live browser session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub session_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub auth_time: OffsetDateTime,
    /// Authentication methods (RFC 8176), e.g. `pwd`.
    pub amr: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub idle_expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub absolute_expires_at: OffsetDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl From<BrowserSession> for SessionView {
    fn from(s: BrowserSession) -> Self {
        Self {
            session_id: s.id.0,
            auth_time: s.auth_time,
            amr: s.amr,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            idle_expires_at: s.idle_expires_at,
            absolute_expires_at: s.absolute_expires_at,
            ip: s.ip,
            user_agent: s.user_agent,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedSessions {
    /// How many sessions were live and are now ended.
    pub revoked_sessions: u64,
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    // A malformed id cannot name a user.
    Uuid::parse_str(raw)
        .map(UserId)
        .map_err(|_| ApiError::not_found("user"))
}

/// The user a path names; a malformed id is 404 like an unknown one.
pub(super) async fn find(state: &AppState, raw: &str) -> Result<User, ApiError> {
    Ok(users::find(state.provider.store.as_ref(), user_id(raw)?).await?)
}

fn new_password(state: &AppState, raw: String) -> Result<Password, ApiError> {
    Password::new_password(raw, state.settings.password.min_length)
        .map_err(|e| ApiError::Invalid(e.to_string()))
}

/// List users, ordered by username.
#[utoipa::path(
    tag = "users",
    params(UserListParams),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 400, description = "Bad query parameters"),
    )
)]
#[get("/users")]
pub async fn list_users(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<web::Json<UserPage>, ApiError> {
    let params: UserListParams = query(&req)?;
    let limit = PageParams::limit(params.limit)?;
    let after = match params.after.as_deref() {
        Some(raw) => Some(
            Username::parse(raw)
                .map_err(|_| ApiError::BadRequest("after is not a username".into()))?,
        ),
        None => None,
    };
    let mut items = state
        .provider
        .store
        .list_users_after(after.as_ref(), limit + 1)
        .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_after = more
        .then(|| items.last().map(|u| u.username.as_str().to_owned()))
        .flatten();
    Ok(web::Json(UserPage {
        items: items.into_iter().map(UserView::from).collect(),
        next_after,
    }))
}

/// One user.
#[utoipa::path(
    tag = "users",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user"),
    )
)]
#[get("/users/{user_id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<UserView>, ApiError> {
    Ok(web::Json(find(&state, &path).await?.into()))
}

/// Create a user; the password is hashed with argon2id.
#[utoipa::path(
    tag = "users",
    request_body = NewUserBody,
    responses(
        (status = 201, description = "Created", body = UserView,
            headers(("Location" = String, description = "The user's URL"))),
        (status = 400, description = "The body is not valid JSON for this schema"),
        (status = 409, description = "The username is taken"),
        (status = 422, description = "A bad username, email, name or password"),
        (status = 503, description = "Password hashing is saturated; retry"),
    )
)]
#[post("/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    caller: AdminCaller,
    body: web::Json<NewUserBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let password = b.password.map(|p| new_password(&state, p)).transpose()?;
    let user = users::create(
        state.provider.store.as_ref(),
        &state.auth.hasher,
        NewAccount {
            username: b.username,
            email: b.email,
            name: b.name,
            password,
        },
        now(&state),
        &caller.actor,
    )
    .await?;
    let location = format!("{}/users/{}", super::PREFIX, user.id);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(UserView::from(user)))
}

/// Change a user's email, its verification, or name.
#[utoipa::path(
    tag = "users",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The updated user", body = UserView),
        (status = 400, description = "The body is not valid JSON for this schema"),
        (status = 404, description = "No such user"),
        (status = 422, description = "A bad email or name"),
    )
)]
#[patch("/users/{user_id}")]
pub async fn update_user(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
    body: web::Json<UserPatch>,
) -> Result<web::Json<UserView>, ApiError> {
    let b = body.into_inner();
    let user = users::update_profile(
        state.provider.store.as_ref(),
        user_id(&path)?,
        ProfileChange {
            email: b.email,
            name: b.name,
            email_verified: b.email_verified,
        },
        now(&state),
        &caller.actor,
    )
    .await?;
    Ok(web::Json(user.into()))
}

/// Set a user's password: every session of the user ends and any lockout is lifted.
#[utoipa::path(
    tag = "users",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    request_body = PasswordBody,
    responses(
        (status = 204, description = "Changed; the user was signed out everywhere"),
        (status = 400, description = "The body is not valid JSON for this schema"),
        (status = 404, description = "No such user"),
        (status = 422, description = "The password is too short or too long"),
        (status = 503, description = "Password hashing is saturated; retry"),
    )
)]
#[put("/users/{user_id}/password")]
pub async fn set_user_password(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
    body: web::Json<PasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let user = find(&state, &path).await?;
    let password = new_password(&state, body.into_inner().password)?;
    users::set_password(
        state.provider.store.as_ref(),
        &state.auth.hasher,
        Some(&state.auth.throttle_keys),
        &user,
        password,
        now(&state),
        &caller.actor,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn set_disabled(
    state: &AppState,
    caller: &AdminCaller,
    raw: &str,
    disabled: bool,
) -> Result<web::Json<UserView>, ApiError> {
    let id = user_id(raw)?;
    let store = state.provider.store.as_ref();
    users::find(store, id).await?;
    users::set_disabled(store, id, disabled, now(state), &caller.actor).await?;
    Ok(web::Json(users::find(store, id).await?.into()))
}

/// Disable a user: no sign-in, and every session ends. Idempotent.
#[utoipa::path(
    tag = "users",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user, now disabled", body = UserView),
        (status = 404, description = "No such user"),
    )
)]
#[post("/users/{user_id}/disable")]
pub async fn disable_user(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
) -> Result<web::Json<UserView>, ApiError> {
    set_disabled(&state, &caller, &path, true).await
}

/// Re-enable a disabled user. Idempotent.
#[utoipa::path(
    tag = "users",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user, now enabled", body = UserView),
        (status = 404, description = "No such user"),
    )
)]
#[post("/users/{user_id}/enable")]
pub async fn enable_user(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
) -> Result<web::Json<UserView>, ApiError> {
    set_disabled(&state, &caller, &path, false).await
}

/// Delete a user for good: their sessions, consents and pending codes go too; audit rows
/// stay.
#[utoipa::path(
    tag = "users",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such user"),
    )
)]
#[delete("/users/{user_id}")]
pub async fn delete_user(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = find(&state, &path).await?;
    if !users::delete(
        state.provider.store.as_ref(),
        Some(&state.auth.throttle_keys),
        &user,
        now(&state),
        &caller.actor,
    )
    .await?
    {
        return Err(ApiError::not_found("user"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// A user's live sessions, most recently used first.
#[utoipa::path(
    tag = "sessions",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Live sessions", body = Vec<SessionView>),
        (status = 404, description = "No such user"),
    )
)]
#[get("/users/{user_id}/sessions")]
pub async fn list_sessions(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<Vec<SessionView>>, ApiError> {
    let user = find(&state, &path).await?;
    let sessions = users::sessions(state.provider.store.as_ref(), user.id, now(&state)).await?;
    Ok(web::Json(
        sessions.into_iter().map(SessionView::from).collect(),
    ))
}

/// End one session of a user.
#[utoipa::path(
    tag = "sessions",
    params(
        ("user_id" = Uuid, Path, description = "The user's id"),
        ("session_id" = Uuid, Path, description = "The session's id"),
    ),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "No such user, or no such live session of the user"),
    )
)]
#[delete("/users/{user_id}/sessions/{session_id}")]
pub async fn revoke_session(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, session) = path.into_inner();
    let user = find(&state, &user).await?;
    let session = Uuid::parse_str(&session)
        .map(SessionId)
        .map_err(|_| ApiError::not_found("live session"))?;
    let revoked = users::revoke_session(
        state.provider.store.as_ref(),
        user.id,
        session,
        now(&state),
        &caller.actor,
    )
    .await?;
    if !revoked {
        return Err(ApiError::not_found("live session"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Sign a user out everywhere.
#[utoipa::path(
    tag = "sessions",
    params(("user_id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "How many sessions ended", body = RevokedSessions),
        (status = 404, description = "No such user"),
    )
)]
#[delete("/users/{user_id}/sessions")]
pub async fn revoke_all_sessions(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
) -> Result<web::Json<RevokedSessions>, ApiError> {
    let user = find(&state, &path).await?;
    let n = users::revoke_all_sessions(
        state.provider.store.as_ref(),
        user.id,
        now(&state),
        &caller.actor,
    )
    .await?;
    Ok(web::Json(RevokedSessions {
        revoked_sessions: n,
    }))
}
