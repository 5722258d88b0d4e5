//! `/admin/v1/clients`: register, inspect, change and delete OAuth clients, and rotate
//! their secrets, through the same functions as `portcullis clients …`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::auth::AdminCaller;
use super::error::ApiError;
use super::{PageParams, now, query};
use crate::app::AppState;
use crate::clients::{self, ClientUpdate, Registration};
use crate::domain::client::TokenDelivery;
use crate::domain::client::{AuthMethod, Client, ClientId, ClientKind};
use crate::domain::jws::SigningAlg;

/// A registered client. Its secret is never shown (only its SHA-256 is stored).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    #[schema(example = "acme-tracker")]
    pub client_id: String,
    #[schema(example = "Acme Tracker")]
    pub name: String,
    /// `confidential`, `spa` or `native`.
    #[schema(example = "confidential")]
    pub kind: String,
    /// `client_secret_basic`, `client_secret_post` or `none` (RFC 7591 §2).
    #[schema(example = "client_secret_basic")]
    pub auth_method: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub allowed_origins: Vec<String>,
    #[schema(example = json!(["authorization_code"]))]
    pub grant_types: Vec<String>,
    #[schema(example = json!(["openid", "profile", "email"]))]
    pub scopes: Vec<String>,
    /// Trusted first-party application: granted every scope it asks for, including
    /// `offline_access`, without a consent page (OpenID Connect Core §11 allows such a
    /// condition for offline access), unless the request says `prompt=consent`.
    pub first_party: bool,
    /// Authorization requests must carry a PKCE S256 challenge (always for spa and native).
    pub require_pkce: bool,
    /// Suspended: refused at /authorize and /token, and its access tokens are refused,
    /// until it is enabled again (`PATCH` with `"disabled": false`).
    pub disabled: bool,
    /// May introspect access tokens issued to other clients (a resource server, RFC 7662
    /// §4); every client may introspect its own.
    pub introspection: bool,
    /// Its users must sign in with a second factor.
    pub require_mfa: bool,
    /// `body` or `cookie` (spa clients on the provider's site).
    #[schema(example = "body")]
    pub refresh_token_delivery: String,
    /// The algorithm of this client's ID tokens.
    #[schema(example = "RS256")]
    pub id_token_signed_response_alg: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<Client> for ClientView {
    fn from(c: Client) -> Self {
        Self {
            client_id: c.id.to_string(),
            name: c.name,
            kind: c.kind.as_str().to_owned(),
            auth_method: c.auth_method.as_str().to_owned(),
            redirect_uris: crate::clients::texts(c.redirect_uris),
            post_logout_redirect_uris: crate::clients::texts(c.post_logout_redirect_uris),
            allowed_origins: c.allowed_origins,
            grant_types: crate::clients::texts(c.grant_types),
            scopes: c.scopes.to_vec(),
            first_party: c.first_party,
            require_pkce: c.require_pkce,
            disabled: c.disabled,
            introspection: c.introspection,
            require_mfa: c.require_mfa,
            refresh_token_delivery: c.refresh_token_delivery.as_str().to_owned(),
            id_token_signed_response_alg: c.id_token_signed_response_alg.as_str().to_owned(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A newly registered client and, for a confidential one, its secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: ClientView,
    /// Present for confidential clients only. Store it now: it is never shown again.
    pub client_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientPage {
    pub items: Vec<ClientView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientSecret {
    pub client_id: String,
    /// The new secret, shown this once; the old one no longer works.
    pub client_secret: String,
}

/// What registration takes (the same rules as `portcullis clients create`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// A chosen client_id (1–128 of letters, digits and `-._~`); random when absent.
    pub client_id: Option<String>,
    #[schema(example = "Acme Tracker")]
    pub name: String,
    #[schema(value_type = String, example = "confidential")]
    pub kind: ClientKind,
    /// Default for confidential clients: client_secret_basic; public clients: none.
    #[schema(value_type = Option<String>, example = "client_secret_basic")]
    pub auth_method: Option<AuthMethod>,
    /// Required for the authorization_code grant: https, http on loopback, or (native
    /// apps) a reverse-domain private-use scheme.
    #[serde(default)]
    #[schema(example = json!(["https://tracker.example.com/callback"]))]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Default: authorization_code.
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Default: openid profile email.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Trusted first-party application: granted every scope it asks for, including
    /// `offline_access`, without a consent page (OpenID Connect Core §11 allows such a
    /// condition for offline access), unless the request says `prompt=consent`.
    #[serde(default)]
    pub first_party: bool,
    /// `id_token_signed_response_alg` (OpenID Connect Registration §2): RS256 (default),
    /// ES256 or EdDSA, one of `keys.algorithms`.
    #[schema(value_type = Option<String>, example = "RS256")]
    pub id_token_signed_response_alg: Option<SigningAlg>,
    /// `body` (default) or `cookie`: an HttpOnly cookie for spa clients on the
    /// provider's site (see the README's "Refresh tokens").
    #[serde(default)]
    #[schema(value_type = String, example = "body")]
    pub refresh_token_delivery: TokenDelivery,
    /// Default true. Only a confidential client may be registered without PKCE (it then
    /// relies on its secret and the nonce; RFC 9700 §2.1.1); a challenge it sends is still
    /// enforced.
    #[serde(default = "required")]
    pub require_pkce: bool,
    /// Default false. May introspect access tokens issued to other clients (resource
    /// servers; RFC 7662 §4). Confidential clients only.
    #[serde(default)]
    pub introspection: bool,
    /// Default false. Its users must sign in with a second factor (ID tokens carry the
    /// multi-factor `acr`); a user without one is told to set one up.
    #[serde(default)]
    pub require_mfa: bool,
}

fn required() -> bool {
    true
}

/// The fields to change; absent ones stay. client_id and kind never change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatch {
    pub name: Option<String>,
    #[schema(value_type = Option<String>)]
    pub auth_method: Option<AuthMethod>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub first_party: Option<bool>,
    pub require_pkce: Option<bool>,
    /// Confidential clients only: may introspect other clients' access tokens.
    pub introspection: Option<bool>,
    pub require_mfa: Option<bool>,
    /// true suspends the client (audited as `client.disabled`), false re-enables it
    /// (`client.enabled`); setting the state it already has changes nothing.
    pub disabled: Option<bool>,
}

// The wire types stay apart from the registration types so the OpenAPI schema changes
// only on purpose; these conversions destructure every field, so a field added to one side
// and not the other does not compile.
impl From<NewClient> for Registration {
    fn from(b: NewClient) -> Self {
        let NewClient {
            client_id,
            name,
            kind,
            auth_method,
            redirect_uris,
            post_logout_redirect_uris,
            allowed_origins,
            grant_types,
            scopes,
            first_party,
            id_token_signed_response_alg,
            refresh_token_delivery,
            require_pkce,
            introspection,
            require_mfa,
        } = b;
        Self {
            client_id,
            name,
            kind,
            auth_method,
            redirect_uris,
            post_logout_redirect_uris,
            allowed_origins,
            grant_types,
            scopes,
            first_party,
            refresh_token_delivery,
            id_token_signed_response_alg,
            require_pkce,
            introspection,
            require_mfa,
        }
    }
}

impl From<ClientPatch> for ClientUpdate {
    fn from(b: ClientPatch) -> Self {
        let ClientPatch {
            name,
            auth_method,
            redirect_uris,
            post_logout_redirect_uris,
            allowed_origins,
            grant_types,
            scopes,
            first_party,
            require_pkce,
            introspection,
            require_mfa,
            disabled,
        } = b;
        Self {
            name,
            auth_method,
            redirect_uris,
            post_logout_redirect_uris,
            allowed_origins,
            grant_types,
            scopes,
            first_party,
            require_pkce,
            introspection,
            require_mfa,
            disabled,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClientListParams {
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
    /// The `next_after` of the previous page.
    pub after: Option<String>,
}

fn client_id(raw: &str) -> Result<ClientId, ApiError> {
    // A malformed id cannot name a client.
    ClientId::parse(raw).map_err(|_| ApiError::not_found("client"))
}

async fn find(state: &AppState, id: &ClientId) -> Result<Client, ApiError> {
    state
        .provider
        .store
        .find_client(id)
        .await?
        .ok_or_else(|| ApiError::not_found("client"))
}

/// List clients, ordered by client_id.
#[utoipa::path(
    tag = "clients",
    params(ClientListParams),
    responses(
        (status = 200, description = "A page of clients", body = ClientPage),
        (status = 400, description = "Bad query parameters"),
    )
)]
#[get("/clients")]
pub async fn list_clients(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<web::Json<ClientPage>, ApiError> {
    let params: ClientListParams = query(&req)?;
    let limit = PageParams::limit(params.limit)?;
    let after = match params.after.as_deref() {
        Some(raw) => Some(
            ClientId::parse(raw)
                .map_err(|_| ApiError::BadRequest("after is not a client_id".into()))?,
        ),
        None => None,
    };
    let mut items = state
        .provider
        .store
        .list_clients_after(after.as_ref(), limit + 1)
        .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_after = more
        .then(|| items.last().map(|c| c.id.to_string()))
        .flatten();
    Ok(web::Json(ClientPage {
        items: items.into_iter().map(ClientView::from).collect(),
        next_after,
    }))
}

/// One client.
#[utoipa::path(
    tag = "clients",
    params(("client_id" = String, Path, description = "The client's client_id")),
    responses(
        (status = 200, description = "The client", body = ClientView),
        (status = 404, description = "No such client"),
    )
)]
#[get("/clients/{client_id}")]
pub async fn get_client(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<ClientView>, ApiError> {
    let client = find(&state, &client_id(&path)?).await?;
    Ok(web::Json(client.into()))
}

/// Register a client. A confidential client's secret is in the response, once.
#[utoipa::path(
    tag = "clients",
    request_body = NewClient,
    responses(
        (status = 201, description = "Registered", body = CreatedClient,
            headers(("Location" = String, description = "The client's URL"))),
        (status = 400, description = "The body is not valid JSON for this schema"),
        (status = 409, description = "The client_id is taken"),
        (status = 422, description = "A value breaks a registration rule"),
    )
)]
#[post("/clients")]
pub async fn create_client(
    state: web::Data<AppState>,
    caller: AdminCaller,
    body: web::Json<NewClient>,
) -> Result<HttpResponse, ApiError> {
    let registration = Registration::from(body.into_inner());
    clients::check_id_token_alg(
        registration.id_token_signed_response_alg,
        &state.settings.keys.algorithms,
    )
    .map_err(|e| ApiError::from(clients::RegistrationError::Invalid(e)))?;
    let (client, secret) = clients::register(
        state.provider.store.as_ref(),
        registration,
        now(&state),
        &caller.actor,
    )
    .await?;
    let location = format!("{}/clients/{}", super::PREFIX, client.id);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(CreatedClient {
            client: client.into(),
            client_secret: secret.map(|s| s.expose().to_owned()),
        }))
}

/// Change a client's mutable fields, under the registration rules.
#[utoipa::path(
    tag = "clients",
    params(("client_id" = String, Path, description = "The client's client_id")),
    request_body = ClientPatch,
    responses(
        (status = 200, description = "The updated client", body = ClientView),
        (status = 400, description = "The body is not valid JSON for this schema"),
        (status = 404, description = "No such client"),
        (status = 422, description = "A value breaks a registration rule"),
    )
)]
#[patch("/clients/{client_id}")]
pub async fn update_client(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
    body: web::Json<ClientPatch>,
) -> Result<web::Json<ClientView>, ApiError> {
    let id = client_id(&path)?;
    let change = ClientUpdate::from(body.into_inner());
    let client = clients::update(
        state.provider.store.as_ref(),
        &id,
        change,
        now(&state),
        &caller.actor,
    )
    .await?;
    Ok(web::Json(client.into()))
}

/// Delete a client; its consents go with it and its tokens stop being renewed.
#[utoipa::path(
    tag = "clients",
    params(("client_id" = String, Path, description = "The client's client_id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such client"),
    )
)]
#[delete("/clients/{client_id}")]
pub async fn delete_client(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = client_id(&path)?;
    if !clients::delete(
        state.provider.store.as_ref(),
        &id,
        now(&state),
        &caller.actor,
    )
    .await?
    {
        return Err(ApiError::not_found("client"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Replace a confidential client's secret; the old one stops working at once.
#[utoipa::path(
    tag = "clients",
    params(("client_id" = String, Path, description = "The client's client_id")),
    responses(
        (status = 200, description = "The new secret, shown once", body = ClientSecret),
        (status = 404, description = "No such client"),
        (status = 409, description = "A public client has no secret"),
    )
)]
#[post("/clients/{client_id}/rotate-secret")]
pub async fn rotate_client_secret(
    state: web::Data<AppState>,
    caller: AdminCaller,
    path: web::Path<String>,
) -> Result<web::Json<ClientSecret>, ApiError> {
    let id = client_id(&path)?;
    let client = find(&state, &id).await?;
    if client.kind.is_public() {
        return Err(ApiError::Conflict(
            "a public client has no secret to rotate".into(),
        ));
    }
    let secret = clients::rotate_secret(
        state.provider.store.as_ref(),
        &id,
        now(&state),
        &caller.actor,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("client"))?;
    Ok(web::Json(ClientSecret {
        client_id: id.to_string(),
        client_secret: secret.expose().to_owned(),
    }))
}
