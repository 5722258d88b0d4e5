//! The admin REST API at `/admin/v1`: JSON, protected by Portcullis's own access tokens
//! carrying `portcullis:admin` (obtained with client_credentials by a client the CLI
//! bootstraps: `portcullis clients create --admin`), errors as RFC 9457 problem
//! documents, and an OpenAPI 3 document generated from the handlers themselves.
//!
//! Every handler is listed once, in `admin_api!`: that one list both mounts the routes
//! (each handler's actix route attribute names its method and path) and builds the
//! OpenAPI document (utoipa reads the same attribute), so the two cannot drift.

mod audit;
mod auth;
mod clients;
mod error;
mod factors;
mod keys;
mod users;

use std::sync::OnceLock;

use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;

pub use auth::AdminCaller;
pub use error::{ApiError, PROBLEM_JSON, Problem};

use crate::app::AppState;
use crate::domain::scope::ADMIN_SCOPE;
use crate::urlencoded::parse_strict;

/// Where the admin API is mounted.
pub const PREFIX: &str = "/admin/v1";
/// The one route that needs no token: the API's own description.
pub const OPENAPI_PATH: &str = "/admin/v1/openapi.json";
/// The largest JSON body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Page sizes: default and maximum.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 500;

macro_rules! admin_api {
    ($($module:ident :: $handler:ident),* $(,)?) => {
        #[derive(utoipa::OpenApi)]
        #[openapi(
            info(
                title = "Portcullis admin API",
                description = "Manage clients, users, their sessions and second factors, signing keys, \
                    and read the audit trail. \
                    Authenticate with an access token carrying the portcullis:admin scope, obtained \
                    with the client_credentials grant at the token endpoint by an admin client \
                    (`portcullis clients create --admin`). Errors are RFC 9457 problem documents.",
            ),
            paths($($module::$handler),*),
            components(schemas(Problem)),
            tags(
                (name = "clients", description = "OAuth clients"),
                (name = "users", description = "User accounts"),
                (name = "sessions", description = "Browser sessions of a user"),
                (name = "factors", description = "Second factors and recovery codes of a user"),
                (name = "keys", description = "Signing keys"),
                (name = "audit", description = "The audit trail"),
                (name = "meta", description = "This document"),
            )
        )]
        struct ApiDoc;

        fn mount(scope: actix_web::Scope) -> actix_web::Scope {
            scope$(.service($module::$handler))*
        }
    };
}

admin_api! {
    clients::list_clients,
    clients::get_client,
    clients::create_client,
    clients::update_client,
    clients::delete_client,
    clients::rotate_client_secret,
    users::list_users,
    users::get_user,
    users::create_user,
    users::update_user,
    users::set_user_password,
    users::disable_user,
    users::enable_user,
    users::delete_user,
    users::list_sessions,
    users::revoke_session,
    users::revoke_all_sessions,
    factors::list_factors,
    factors::enroll_totp,
    factors::remove_factor,
    factors::reset_factors,
    factors::regenerate_recovery_codes,
    keys::list_keys,
    keys::rotate_keys,
    keys::retire_key,
    audit::list_audit_events,
    meta::openapi_document,
}

/// Mounts the admin API (called once from `http::routes`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let json = web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(|err, _| error::json_error(err).into());
    cfg.service(
        mount(web::scope(PREFIX))
            .app_data(json)
            .default_service(web::to(fallback))
            .wrap(from_fn(auth::require_admin)),
    );
}

/// Unknown routes are 404, known routes asked with another method 405 (RFC 9110
/// §15.5.6, with `Allow`), both as problem documents.
async fn fallback(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    match allowed_methods(req.path()) {
        Some(allow) => Err(ApiError::MethodNotAllowed { allow }),
        None => Err(ApiError::UnknownRoute),
    }
}

/// The methods a mounted route answers, by matching `path` against the document's path
/// templates (`{name}` matches one non-empty segment). When several templates match, the
/// ones with the most literal segments win: `/users/{user_id}/factors/totp` is that route,
/// not a factor named `totp`.
fn allowed_methods(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let matching: Vec<(usize, &str)> = routes()
        .iter()
        .filter_map(|(template, method)| {
            let t: Vec<&str> = template.split('/').collect();
            let mut literals = 0;
            let matches = t.len() == segments.len()
                && t.iter().zip(&segments).all(|(t, s)| {
                    if t.starts_with('{') && t.ends_with('}') {
                        !s.is_empty()
                    } else {
                        literals += 1;
                        t == s
                    }
                });
            matches.then_some((literals, method.as_str()))
        })
        .collect();
    let most = matching.iter().map(|(literals, _)| *literals).max()?;
    let methods: Vec<String> = matching
        .iter()
        .filter(|(literals, _)| *literals == most)
        .map(|(_, method)| method.to_ascii_uppercase())
        .collect();
    Some(methods.join(", "))
}

/// The error for a path segment that is not a well-formed id of `what`: 404, unless the
/// path is a more specific route (`DELETE /users/{user_id}/factors/totp` reaches the
/// `{factor_id}` handler), which does not answer this method: 405.
fn not_an_id(req: &HttpRequest, what: &str) -> ApiError {
    match allowed_methods(req.path()) {
        Some(allow) if !allow.split(", ").any(|m| m == req.method().as_str()) => {
            ApiError::MethodNotAllowed { allow }
        }
        _ => ApiError::not_found(what),
    }
}

/// Every `(path, method)` the admin API serves, from the generated document.
pub fn routes() -> &'static [(String, String)] {
    static ROUTES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut out = Vec::new();
        if let Some(paths) = base_document()["paths"].as_object() {
            for (path, item) in paths {
                for method in HTTP_METHODS {
                    if item.get(method).is_some() {
                        out.push((path.clone(), method.to_owned()));
                    }
                }
            }
        }
        out
    })
}

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The generated document with everything that does not depend on the issuer: full
/// paths, the problem responses every operation shares, and the security schemes.
fn base_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi())
            .unwrap_or_else(|_| json!({}));
        complete(&mut doc);
        doc
    })
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } } },
    })
}

fn complete(doc: &mut Value) {
    let paths = doc["paths"].take();
    let mut prefixed = serde_json::Map::new();
    if let Value::Object(paths) = paths {
        for (path, mut item) in paths {
            let full = format!("{PREFIX}{path}");
            let public = full == OPENAPI_PATH;
            for method in HTTP_METHODS {
                let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else {
                    continue;
                };
                let has_body = op.contains_key("requestBody");
                let responses = op.entry("responses").or_insert_with(|| json!({}));
                let Some(responses) = responses.as_object_mut() else {
                    continue;
                };
                // Declared error statuses get the problem body.
                for (status, response) in responses.iter_mut() {
                    if status.as_str() >= "400"
                        && response.get("content").is_none()
                        && let Some(r) = response.as_object_mut()
                    {
                        r.insert("content".into(), problem_response("")["content"].clone());
                    }
                }
                let mut shared = vec![
                    ("500", "Internal error"),
                    (
                        "503",
                        "The database is unreachable (code temporarily_unavailable) or the \
                         server is busy (code busy); retry after Retry-After seconds",
                    ),
                ];
                if !public {
                    shared.push((
                        "401",
                        "No, an invalid, an expired or a revoked access token (RFC 6750 §3.1)",
                    ));
                    shared.push(("403", "The access token lacks the portcullis:admin scope"));
                }
                if has_body {
                    shared.push(("400", "The body is not valid JSON for this schema"));
                    shared.push(("413", "The body is larger than 64 KiB"));
                    shared.push(("415", "The body is not application/json"));
                }
                for (status, description) in shared {
                    responses
                        .entry(status)
                        .or_insert_with(|| problem_response(description));
                }
                if public {
                    // No security requirement for the description itself.
                    op.insert("security".into(), json!([]));
                }
            }
            prefixed.insert(full, item);
        }
    }
    doc["paths"] = Value::Object(prefixed);
    doc["security"] = json!([{ "bearer": [] }, { "client_credentials": [ADMIN_SCOPE] }]);
    if let Some(components) = doc
        .as_object_mut()
        .map(|d| d.entry("components").or_insert_with(|| json!({})))
    {
        components["securitySchemes"] = json!({
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An access token (RFC 9068) carrying the portcullis:admin scope.",
            },
            "client_credentials": {
                "type": "oauth2",
                "description": "Obtain the token with the client_credentials grant (RFC 6749 §4.4).",
                "flows": { "clientCredentials": {
                    "tokenUrl": "/token",
                    "scopes": { ADMIN_SCOPE: "Administer this identity provider" },
                }},
            },
        });
    }
}

/// The document as served: the issuer's server URL and token endpoint filled in.
pub fn document(issuer: &str) -> Value {
    let mut doc = base_document().clone();
    doc["servers"] = json!([{ "url": issuer }]);
    doc["components"]["securitySchemes"]["client_credentials"]["flows"]["clientCredentials"]["tokenUrl"] =
        json!(format!("{issuer}/token"));
    doc
}

mod meta {
    use super::*;

    /// This OpenAPI document (no token needed).
    #[utoipa::path(
        tag = "meta",
        responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json", body = Object))
    )]
    #[get("/openapi.json")]
    pub async fn openapi_document(state: web::Data<AppState>) -> HttpResponse {
        HttpResponse::Ok().json(document(&state.settings.issuer))
    }
}

/// What the admin API keeps between requests: built once by `startup` and registered
/// beside the `AppState`, so every worker shares it.
#[derive(Default)]
pub struct AdminState {
    /// Rate of `admin.denied` audit rows per caller.
    denials: auth::DenialLog,
}

/// The time of the provider's clock.
fn now(state: &AppState) -> OffsetDateTime {
    state.provider.clock.now()
}

/// The query string parsed strictly (no repeated parameter; unknown ones refused by the
/// target type).
fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    parse_strict(req.query_string().as_bytes()).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Page size rules shared by every list.
struct PageParams;

impl PageParams {
    fn limit(requested: Option<u32>) -> Result<u32, ApiError> {
        match requested {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_PAGE}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_route_decides_the_allowed_methods() {
        let allowed = |p: &str| allowed_methods(&format!("{PREFIX}{p}"));
        // `totp` is the enrollment route, not a factor id.
        assert_eq!(allowed("/users/u/factors/totp").as_deref(), Some("POST"));
        assert_eq!(allowed("/users/u/factors/f").as_deref(), Some("DELETE"));
        assert_eq!(allowed("/users/u/factors").as_deref(), Some("GET, DELETE"));
        assert_eq!(allowed("/users/u/nothing"), None);
    }
}
