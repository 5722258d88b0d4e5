//! Client registration, shared by the CLI and (later) the admin API: validation of every
//! field, secret generation (256-bit, shown once, stored as SHA-256) and auditing.

use time::OffsetDateTime;

use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::{
    AuthMethod, Client, ClientError, ClientId, ClientKind, GRANT_TYPES, validate_origin,
    validate_redirect_uri,
};
use crate::domain::scope::ScopeSet;
use crate::domain::secret::OpaqueToken;
use crate::storage::{Store, StoreError};

/// What an administrator asks for.
#[derive(Debug, Clone)]
pub struct Registration {
    pub client_id: Option<String>,
    pub name: String,
    pub kind: ClientKind,
    pub auth_method: Option<AuthMethod>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub first_party: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(transparent)]
    Invalid(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Default scopes of a new client.
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// Validates and stores a new client. Returns it with its secret (confidential clients),
/// which is never shown again.
pub async fn register(
    store: &dyn Store,
    reg: Registration,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<(Client, Option<OpaqueToken>), RegistrationError> {
    let inconsistent = |m| RegistrationError::Invalid(ClientError::Inconsistent(m));
    let id = match &reg.client_id {
        Some(raw) => ClientId::parse(raw)?,
        None => ClientId::parse(&uuid::Uuid::new_v4().simple().to_string())?,
    };
    let name = reg.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(inconsistent(
            "the client name must have 1 to 100 characters",
        ));
    }
    let auth_method = match (reg.kind, reg.auth_method) {
        (ClientKind::Confidential, None) => AuthMethod::ClientSecretBasic,
        (ClientKind::Confidential, Some(AuthMethod::None)) => {
            return Err(inconsistent(
                "a confidential client authenticates with a secret",
            ));
        }
        (ClientKind::Confidential, Some(m)) => m,
        (_, None | Some(AuthMethod::None)) => AuthMethod::None,
        (_, Some(_)) => {
            return Err(inconsistent(
                "public clients (spa, native) cannot keep a secret: their auth method is none",
            ));
        }
    };
    if reg.redirect_uris.is_empty() {
        return Err(inconsistent("at least one redirect URI is required"));
    }
    for uri in reg
        .redirect_uris
        .iter()
        .chain(&reg.post_logout_redirect_uris)
    {
        validate_redirect_uri(uri, reg.kind)?;
    }
    let mut origins = Vec::new();
    for origin in &reg.allowed_origins {
        origins.push(validate_origin(origin)?);
    }
    if reg.kind == ClientKind::Spa && origins.is_empty() {
        // A browser app calls the token endpoint from the origin of its redirect URIs.
        for uri in &reg.redirect_uris {
            if let Ok(url) = url::Url::parse(uri) {
                let origin = url.origin().ascii_serialization();
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
        }
    }
    let grant_types = if reg.grant_types.is_empty() {
        vec!["authorization_code".to_owned()]
    } else {
        reg.grant_types.clone()
    };
    for grant in &grant_types {
        if !GRANT_TYPES.contains(&grant.as_str()) {
            return Err(inconsistent(
                "unknown grant type (authorization_code, refresh_token, client_credentials)",
            ));
        }
        if grant == "client_credentials" && reg.kind != ClientKind::Confidential {
            return Err(inconsistent(
                "only confidential clients may use client_credentials",
            ));
        }
    }
    let scopes = if reg.scopes.is_empty() {
        ScopeSet::from_tokens(DEFAULT_SCOPES)
    } else {
        ScopeSet::parse(&reg.scopes.join(" "))
            .map_err(|_| inconsistent("a scope contains characters RFC 6749 §3.3 does not allow"))?
    };
    let secret = (reg.kind == ClientKind::Confidential).then(OpaqueToken::generate);
    let client = Client {
        id,
        name,
        kind: reg.kind,
        auth_method,
        secret_hash: secret.as_ref().map(OpaqueToken::hash),
        redirect_uris: reg.redirect_uris,
        post_logout_redirect_uris: reg.post_logout_redirect_uris,
        allowed_origins: origins,
        grant_types,
        scopes,
        first_party: reg.first_party,
        created_at: now,
        updated_at: now,
    };
    let audit = AuditEvent::new(now, AuditKind::ClientCreated, Outcome::Success, actor)
        .client(client.id.as_str())
        .detail("kind", client.kind.as_str());
    store.create_client(&client, &audit).await?;
    Ok((client, secret))
}

/// Replaces a confidential client's secret; the old one stops working at once.
pub async fn rotate_secret(
    store: &dyn Store,
    id: &ClientId,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<Option<OpaqueToken>, StoreError> {
    let secret = OpaqueToken::generate();
    let audit = AuditEvent::new(now, AuditKind::ClientSecretRotated, Outcome::Success, actor)
        .client(id.as_str());
    let changed = store
        .set_client_secret(id, &secret.hash(), now, &audit)
        .await?;
    Ok(changed.then_some(secret))
}

pub async fn delete(
    store: &dyn Store,
    id: &ClientId,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<bool, StoreError> {
    let audit =
        AuditEvent::new(now, AuditKind::ClientDeleted, Outcome::Success, actor).client(id.as_str());
    store.delete_client(id, &audit).await
}
