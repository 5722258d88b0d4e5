//! Client registration, shared by the CLI and the admin API: validation of every
//! field, secret generation (256-bit, shown once, stored as SHA-256) and auditing.

use time::OffsetDateTime;

use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::TokenDelivery;
use crate::domain::client::{
    AuthMethod, Client, ClientError, ClientId, ClientKind, GrantType, GrantTypes, validate_origin,
};
use crate::domain::jws::SigningAlg;
use crate::domain::redirect_uri::RedirectUri;
use crate::domain::scope::{ADMIN_SCOPE, ScopeSet};
use crate::domain::secret::{OpaqueToken, TokenHash, kind};
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
    pub refresh_token_delivery: TokenDelivery,
    /// `id_token_signed_response_alg` (OpenID Connect Registration §2); RS256 when unset.
    /// It must be one of `keys.algorithms`: see `check_id_token_alg`.
    pub id_token_signed_response_alg: Option<SigningAlg>,
    /// PKCE required of authorization requests (the default). Only a confidential client
    /// may be registered without it: see `Client::require_pkce`.
    pub require_pkce: bool,
    /// May introspect other clients' access tokens (a resource server; RFC 7662 §4).
    /// Confidential clients only: see `Client::introspection`.
    pub introspection: bool,
    /// Users must authenticate with a second factor: see `Client::require_mfa`.
    pub require_mfa: bool,
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

impl Registration {
    /// An admin API client (`clients create --admin`): confidential, `client_credentials`
    /// only, with the `portcullis:admin` scope.
    pub fn admin(name: String, client_id: Option<String>) -> Self {
        Self {
            client_id,
            name,
            kind: ClientKind::Confidential,
            auth_method: None,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            allowed_origins: vec![],
            grant_types: vec!["client_credentials".into()],
            scopes: vec![ADMIN_SCOPE.into()],
            first_party: false,
            refresh_token_delivery: TokenDelivery::Body,
            id_token_signed_response_alg: None,
            require_pkce: true,
            introspection: false,
            require_mfa: false,
        }
    }
}

/// The mutable fields of a registered client; `None` leaves a field as it is. The
/// client_id and kind never change (a public client cannot become confidential: it has
/// no secret, and its users consented to a public client).
#[derive(Debug, Clone, Default)]
pub struct ClientUpdate {
    pub name: Option<String>,
    pub auth_method: Option<AuthMethod>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub first_party: Option<bool>,
    pub require_pkce: Option<bool>,
    pub introspection: Option<bool>,
    pub require_mfa: Option<bool>,
    /// Suspend (true) or re-enable (false) the client: not a registration field, so it
    /// is applied and audited on its own (`client.disabled` / `client.enabled`) by
    /// `set_disabled`, without re-validating the registration.
    pub disabled: Option<bool>,
}

impl ClientUpdate {
    /// The names of the registration fields this update sets, for the audit trail
    /// (`disabled` has audit events of its own).
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("auth_method", self.auth_method.is_some()),
            ("redirect_uris", self.redirect_uris.is_some()),
            (
                "post_logout_redirect_uris",
                self.post_logout_redirect_uris.is_some(),
            ),
            ("allowed_origins", self.allowed_origins.is_some()),
            ("grant_types", self.grant_types.is_some()),
            ("scopes", self.scopes.is_some()),
            ("first_party", self.first_party.is_some()),
            ("require_pkce", self.require_pkce.is_some()),
            ("introspection", self.introspection.is_some()),
            ("require_mfa", self.require_mfa.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("no such client")]
    NotFound,
    #[error(transparent)]
    Invalid(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything registration decides from a request, validated.
struct Validated {
    name: String,
    kind: ClientKind,
    auth_method: AuthMethod,
    redirect_uris: Vec<RedirectUri>,
    post_logout_redirect_uris: Vec<RedirectUri>,
    allowed_origins: Vec<String>,
    grant_types: GrantTypes,
    scopes: ScopeSet,
    first_party: bool,
    refresh_token_delivery: TokenDelivery,
    id_token_signed_response_alg: SigningAlg,
    require_pkce: bool,
    introspection: bool,
    require_mfa: bool,
}

impl Validated {
    /// The client this registration describes, enabled and dated `now`; its id and
    /// secret are not registration fields.
    fn into_client(
        self,
        id: ClientId,
        secret_hash: Option<TokenHash<kind::ClientSecret>>,
        now: OffsetDateTime,
    ) -> Client {
        Client {
            id,
            name: self.name,
            kind: self.kind,
            auth_method: self.auth_method,
            secret_hash,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            allowed_origins: self.allowed_origins,
            grant_types: self.grant_types,
            scopes: self.scopes,
            first_party: self.first_party,
            refresh_token_delivery: self.refresh_token_delivery,
            created_at: now,
            updated_at: now,
            id_token_signed_response_alg: self.id_token_signed_response_alg,
            require_pkce: self.require_pkce,
            disabled: false,
            introspection: self.introspection,
            require_mfa: self.require_mfa,
        }
    }
}

/// The registration rules, shared by `register` and `update`.
fn validate(reg: &Registration) -> Result<Validated, ClientError> {
    let inconsistent = ClientError::Inconsistent;
    let name = reg.name.trim().to_owned();
    // Shown on the consent and logout pages: no control characters, and no bidi
    // overrides that could make "Evil" read as something else.
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
    {
        return Err(inconsistent(
            "the client name must not contain control or bidirectional-override characters",
        ));
    }
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
    let mut grant_types = GrantTypes::new();
    for grant in &reg.grant_types {
        let grant = GrantType::parse(grant).ok_or(inconsistent(
            "unknown grant type (authorization_code, refresh_token, client_credentials)",
        ))?;
        // RFC 6749 §4.4: the client credentials grant is for confidential clients only.
        if grant == GrantType::ClientCredentials && reg.kind != ClientKind::Confidential {
            return Err(inconsistent(
                "only confidential clients may use client_credentials",
            ));
        }
        grant_types.insert(grant);
    }
    if grant_types.is_empty() {
        grant_types.insert(GrantType::AuthorizationCode);
    }
    let redirects = grant_types.contains(&GrantType::AuthorizationCode);
    if redirects && reg.redirect_uris.is_empty() {
        return Err(inconsistent(
            "at least one redirect URI is required for the authorization_code grant",
        ));
    }
    let register = |uris: &[String]| {
        uris.iter()
            .map(|uri| RedirectUri::register(uri, reg.kind))
            .collect::<Result<Vec<_>, _>>()
    };
    let redirect_uris = register(&reg.redirect_uris)?;
    let post_logout_redirect_uris = register(&reg.post_logout_redirect_uris)?;
    let mut origins = Vec::new();
    for origin in &reg.allowed_origins {
        let origin = validate_origin(origin)?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    if reg.kind == ClientKind::Spa && origins.is_empty() {
        // A browser app calls the token endpoint from the origin of its redirect URIs.
        for uri in &redirect_uris {
            let origin = uri.url().origin().ascii_serialization();
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
    }
    let scopes = if reg.scopes.is_empty() {
        ScopeSet::from_tokens(DEFAULT_SCOPES)
    } else {
        ScopeSet::parse(&reg.scopes.join(" "))
            .map_err(|_| inconsistent("a scope contains characters RFC 6749 §3.3 does not allow"))?
    };
    if reg.refresh_token_delivery == TokenDelivery::Cookie {
        // The cookie arrangement protects tokens from script in a browser; other kinds of
        // client have no browser cookie jar to keep it in.
        if reg.kind != ClientKind::Spa {
            return Err(inconsistent(
                "refresh tokens are delivered in a cookie only to spa clients",
            ));
        }
        if !grant_types.contains(&GrantType::RefreshToken) {
            return Err(inconsistent(
                "cookie delivery needs the refresh_token grant",
            ));
        }
        if reg
            .scopes
            .iter()
            .any(|s| s == crate::domain::refresh::OFFLINE_ACCESS)
        {
            return Err(inconsistent(
                "cookie delivery keeps refresh tokens bound to the browser session: no offline_access",
            ));
        }
    }
    if scopes.is_empty() {
        return Err(inconsistent("at least one scope is required"));
    }
    // RFC 9700 §2.1.1: public clients MUST use PKCE; a confidential OpenID Connect client
    // MAY rely on its authentication and the nonce instead.
    if !reg.require_pkce && reg.kind != ClientKind::Confidential {
        return Err(inconsistent(
            "public clients (spa, native) must use PKCE (RFC 9700 §2.1.1)",
        ));
    }
    // RFC 7662 §2.1: the caller of the introspection endpoint authenticates; a public
    // client cannot, so it can never be given the permission.
    if reg.introspection && reg.kind != ClientKind::Confidential {
        return Err(inconsistent(
            "only confidential clients may introspect tokens (RFC 7662 §2.1)",
        ));
    }
    // SECURITY: the admin scope goes only to a confidential client that can do nothing
    // but obtain tokens for itself, so no user flow can ever carry it.
    if scopes.contains(ADMIN_SCOPE)
        && (reg.kind != ClientKind::Confidential
            || grant_types != GrantTypes::from([GrantType::ClientCredentials]))
    {
        return Err(inconsistent(
            "the portcullis:admin scope is only for confidential clients whose only grant type is client_credentials",
        ));
    }
    Ok(Validated {
        name,
        kind: reg.kind,
        auth_method,
        redirect_uris,
        post_logout_redirect_uris,
        allowed_origins: origins,
        grant_types,
        scopes,
        first_party: reg.first_party,
        refresh_token_delivery: reg.refresh_token_delivery,
        id_token_signed_response_alg: reg
            .id_token_signed_response_alg
            .unwrap_or(SigningAlg::RS256),
        require_pkce: reg.require_pkce,
        introspection: reg.introspection,
        require_mfa: reg.require_mfa,
    })
}

/// Validates and stores a new client. Returns it with its secret (confidential clients),
/// which is never shown again.
pub async fn register(
    store: &dyn Store,
    reg: Registration,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<(Client, Option<OpaqueToken<kind::ClientSecret>>), RegistrationError> {
    let id = match &reg.client_id {
        // RFC 9700 §4.15: a client_credentials token's `sub` is the client_id; one shaped
        // like a user id (a hyphenated UUID) could be mistaken for that user's.
        Some(raw) if raw.len() == 36 && uuid::Uuid::try_parse(raw).is_ok() => {
            return Err(ClientError::Inconsistent(
                "a client_id must not look like a user id (a hyphenated UUID)",
            )
            .into());
        }
        Some(raw) => ClientId::parse(raw)?,
        None => ClientId::parse(&uuid::Uuid::new_v4().simple().to_string())?,
    };
    let v = validate(&reg)?;
    let secret = (reg.kind == ClientKind::Confidential).then(OpaqueToken::generate);
    let client = v.into_client(id, secret.as_ref().map(OpaqueToken::hash), now);
    let audit = AuditEvent::new(now, AuditKind::ClientCreated, Outcome::Success, actor)
        .client(client.id.as_str())
        .detail("kind", client.kind.as_str());
    store.create_client(&client, &audit).await?;
    Ok((client, secret))
}

/// A registered value as the text a registration gives it.
pub fn texts<T: std::fmt::Display>(values: impl IntoIterator<Item = T>) -> Vec<String> {
    values.into_iter().map(|v| v.to_string()).collect()
}

/// Changes the mutable fields of a client under the same rules as registration.
pub async fn update(
    store: &dyn Store,
    id: &ClientId,
    change: ClientUpdate,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<Client, UpdateError> {
    let current = store.find_client(id).await?.ok_or(UpdateError::NotFound)?;
    let fields = change.fields();
    // Only `disabled`: no registration change, so no re-validation (an emergency
    // suspension must not fail because an older registration breaks a newer rule).
    if let (true, Some(disabled)) = (fields.is_empty(), change.disabled) {
        let changed = set_disabled(store, id, disabled, now, actor).await?;
        let updated_at = if changed { now } else { current.updated_at };
        return Ok(Client {
            disabled,
            updated_at,
            ..current
        });
    }
    let reg = Registration {
        client_id: Some(current.id.to_string()),
        name: change.name.unwrap_or(current.name),
        kind: current.kind,
        auth_method: Some(change.auth_method.unwrap_or(current.auth_method)),
        redirect_uris: change
            .redirect_uris
            .unwrap_or_else(|| texts(&current.redirect_uris)),
        post_logout_redirect_uris: change
            .post_logout_redirect_uris
            .unwrap_or_else(|| texts(&current.post_logout_redirect_uris)),
        allowed_origins: change.allowed_origins.unwrap_or(current.allowed_origins),
        grant_types: match change.grant_types {
            Some(g) if g.is_empty() => {
                return Err(
                    ClientError::Inconsistent("at least one grant type is required").into(),
                );
            }
            Some(g) => g,
            None => texts(&current.grant_types),
        },
        scopes: match change.scopes {
            Some(s) if s.is_empty() => {
                return Err(ClientError::Inconsistent("at least one scope is required").into());
            }
            Some(s) => s,
            None => current.scopes.to_vec(),
        },
        first_party: change.first_party.unwrap_or(current.first_party),
        refresh_token_delivery: current.refresh_token_delivery,
        id_token_signed_response_alg: Some(current.id_token_signed_response_alg),
        require_pkce: change.require_pkce.unwrap_or(current.require_pkce),
        introspection: change.introspection.unwrap_or(current.introspection),
        require_mfa: change.require_mfa.unwrap_or(current.require_mfa),
    };
    let client = Client {
        // Not registration fields: kept, and `disabled` set on its own below.
        disabled: change.disabled.unwrap_or(current.disabled),
        created_at: current.created_at,
        ..validate(&reg)?.into_client(current.id, current.secret_hash, now)
    };
    let mut audit = AuditEvent::new(now, AuditKind::ClientUpdated, Outcome::Success, actor)
        .client(client.id.as_str())
        .detail("fields", fields);
    // Which way PKCE was switched matters to whoever reads the trail.
    if change.require_pkce.is_some() {
        audit = audit.detail("require_pkce", client.require_pkce);
    }
    // So does who may now introspect other clients' tokens.
    if change.introspection.is_some() {
        audit = audit.detail("introspection", client.introspection);
    }
    if !store.update_client(&client, &audit).await? {
        return Err(UpdateError::NotFound);
    }
    if let Some(disabled) = change.disabled {
        set_disabled(store, id, disabled, now, actor).await?;
    }
    Ok(client)
}

/// Suspends (`disabled`) or re-enables a client; `Ok(false)` when it already was in that
/// state (nothing is written or audited then). While disabled, the client is refused at
/// `/authorize` and `/token` and its access tokens are refused wherever they are checked;
/// enabling it again lets the unexpired ones work again (a suspension, not a revocation).
pub async fn set_disabled(
    store: &dyn Store,
    id: &ClientId,
    disabled: bool,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<bool, UpdateError> {
    if store.find_client(id).await?.is_none() {
        return Err(UpdateError::NotFound);
    }
    let kind = if disabled {
        AuditKind::ClientDisabled
    } else {
        AuditKind::ClientEnabled
    };
    let audit = AuditEvent::new(now, kind, Outcome::Success, actor).client(id.as_str());
    Ok(store.set_client_disabled(id, disabled, now, &audit).await?)
}

/// Refuses an `id_token_signed_response_alg` this deployment has no keys for (not in
/// `keys.algorithms`): the client could never get an ID token.
pub fn check_id_token_alg(
    requested: Option<SigningAlg>,
    enabled: &[SigningAlg],
) -> Result<(), ClientError> {
    match requested {
        Some(alg) if alg != SigningAlg::RS256 && !enabled.contains(&alg) => {
            Err(ClientError::Inconsistent(
                "id_token_signed_response_alg must be one of keys.algorithms",
            ))
        }
        _ => Ok(()),
    }
}

/// Replaces a confidential client's secret; the old one stops working at once.
pub async fn rotate_secret(
    store: &dyn Store,
    id: &ClientId,
    now: OffsetDateTime,
    actor: &Actor,
) -> Result<Option<OpaqueToken<kind::ClientSecret>>, StoreError> {
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
