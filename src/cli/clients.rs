//! `clients …`: OAuth clients, through `crate::clients` like `/admin/v1/clients`.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::keys::parse_alg;
use super::{emit, list};
use crate::audit::Actor;
use crate::clients::{self, ClientUpdate, Registration, UpdateError};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::client::{AuthMethod, ClientId, ClientKind, TokenDelivery};
use crate::domain::jws::SigningAlg;
use crate::storage::Store;

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client. A confidential client's secret is printed once.
    Create(CreateArgs),
    /// List clients.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Show one client.
    Show(ClientArg),
    /// Change a client under the registration rules; options left out stay as they are,
    /// a repeated option replaces the whole list.
    Update(UpdateArgs),
    /// Suspend a client: refused at /authorize and /token, and its access tokens are
    /// refused, until it is enabled again.
    Disable(ClientArg),
    /// Re-enable a disabled client (its unexpired tokens work again).
    Enable(ClientArg),
    /// Delete a client.
    Delete(ClientArg),
    /// Replace a confidential client's secret (printed once).
    RotateSecret(ClientArg),
}

// The client a command is about (no doc comment: it would replace the command's).
#[derive(Debug, Args)]
pub struct ClientArg {
    #[arg(long)]
    pub client_id: String,
}

// `clients create` (no doc comment: it would replace the command's).
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A display name shown on the consent page.
    #[arg(long)]
    pub name: String,
    /// An admin API client: confidential, client_credentials only, scope
    /// portcullis:admin (its secret obtains tokens for /admin/v1).
    #[arg(long, conflicts_with_all = [
        "kind", "redirect_uris", "post_logout_redirect_uris", "allowed_origins",
        "auth_method", "scopes", "grant_types", "first_party", "pkce_optional",
        "introspection", "require_mfa",
    ])]
    pub admin: bool,
    /// confidential (server-side web app or service), spa (browser app) or native
    /// (mobile/desktop).
    #[arg(long, value_parser = parse_kind, required_unless_present = "admin")]
    pub kind: Option<ClientKind>,
    /// An explicit client_id (infrastructure as code); a random one otherwise.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Repeat for several (required for the authorization_code grant).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uris: Vec<String>,
    /// CORS origins for browser apps (default for spa: the redirect URIs' origins).
    #[arg(long = "allowed-origin")]
    pub allowed_origins: Vec<String>,
    /// client_secret_basic (default for confidential) or client_secret_post.
    #[arg(long, value_parser = parse_auth_method)]
    pub auth_method: Option<AuthMethod>,
    /// Allowed scopes (default: openid profile email).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Allowed grant types: authorization_code (default), refresh_token,
    /// client_credentials (confidential clients only).
    #[arg(long = "grant-type")]
    pub grant_types: Vec<String>,
    /// Trusted first-party application: granted every scope it asks for, including
    /// offline_access, without a consent page (OpenID Connect Core §11 allows such a
    /// condition for offline access), unless the request says prompt=consent.
    #[arg(long)]
    pub first_party: bool,
    /// How refresh tokens reach the client: body (default) or cookie (spa clients on
    /// the provider's site: an HttpOnly cookie script cannot read).
    #[arg(long, value_parser = parse_delivery, default_value = "body")]
    pub refresh_token_delivery: TokenDelivery,
    /// id_token_signed_response_alg: RS256 (default), ES256 or EdDSA; must be one of
    /// keys.algorithms.
    #[arg(long, value_parser = parse_alg)]
    pub id_token_alg: Option<SigningAlg>,
    /// Confidential clients only: accept authorization requests without PKCE (the
    /// client relies on its secret and the nonce, RFC 9700 §2.1.1), e.g. for the
    /// OpenID Foundation's certification suite. A challenge it sends is still enforced.
    #[arg(long)]
    pub pkce_optional: bool,
    /// Confidential clients only: may introspect access tokens issued to other
    /// clients (a resource server, RFC 7662 §4). Every client may introspect its own.
    #[arg(long)]
    pub introspection: bool,
    /// Its users must sign in with a second factor (ID tokens then carry the
    /// multi-factor `acr`); a user without one is told to set one up.
    #[arg(long)]
    pub require_mfa: bool,
}

// `clients update` (no doc comment: it would replace the command's).
#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[arg(long)]
    pub client_id: String,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Option<Vec<String>>,
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    #[arg(long = "allowed-origin")]
    pub allowed_origins: Option<Vec<String>>,
    #[arg(long, value_parser = parse_auth_method)]
    pub auth_method: Option<AuthMethod>,
    #[arg(long = "scope")]
    pub scopes: Option<Vec<String>>,
    #[arg(long = "grant-type")]
    pub grant_types: Option<Vec<String>>,
    /// true: a trusted first-party application: granted every scope it asks for, including
    /// offline_access, without a consent page (OpenID Connect Core §11 allows such a
    /// condition for offline access), unless the request says prompt=consent.
    #[arg(long)]
    pub first_party: Option<bool>,
    /// true (the default for new clients) or false (confidential clients only).
    #[arg(long)]
    pub require_pkce: Option<bool>,
    /// true: may introspect access tokens issued to other clients (confidential
    /// clients only); false: only its own.
    #[arg(long)]
    pub introspection: Option<bool>,
    /// true: its users must sign in with a second factor; false: a password suffices
    /// unless the request or the deployment asks for more.
    #[arg(long)]
    pub require_mfa: Option<bool>,
}

fn parse_kind(s: &str) -> Result<ClientKind, String> {
    ClientKind::parse(s).ok_or_else(|| "expected confidential, spa or native".to_owned())
}

fn parse_delivery(s: &str) -> Result<TokenDelivery, String> {
    TokenDelivery::parse(s).ok_or_else(|| "expected body or cookie".to_owned())
}

fn parse_auth_method(s: &str) -> Result<AuthMethod, String> {
    AuthMethod::parse(s)
        .ok_or_else(|| "expected client_secret_basic, client_secret_post or none".to_owned())
}

impl CreateArgs {
    /// What `clients::register` takes; `--admin` stands for `Registration::admin`.
    fn registration(self) -> anyhow::Result<Registration> {
        let kind = match (self.admin, self.kind) {
            (true, _) => return Ok(Registration::admin(self.name, self.client_id)),
            (false, Some(kind)) => kind,
            (false, None) => bail!("--kind is required (or --admin)"),
        };
        Ok(Registration {
            client_id: self.client_id,
            name: self.name,
            kind,
            auth_method: self.auth_method,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            allowed_origins: self.allowed_origins,
            grant_types: self.grant_types,
            scopes: self.scopes,
            first_party: self.first_party,
            refresh_token_delivery: self.refresh_token_delivery,
            id_token_signed_response_alg: self.id_token_alg,
            require_pkce: !self.pkce_optional,
            introspection: self.introspection,
            require_mfa: self.require_mfa,
        })
    }
}

impl UpdateArgs {
    /// What `clients::update` takes: the options given, the rest left as they are.
    fn change(self) -> ClientUpdate {
        ClientUpdate {
            name: self.name,
            auth_method: self.auth_method,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            allowed_origins: self.allowed_origins,
            grant_types: self.grant_types,
            scopes: self.scopes,
            first_party: self.first_party,
            require_pkce: self.require_pkce,
            introspection: self.introspection,
            require_mfa: self.require_mfa,
            disabled: None,
        }
    }
}

fn client_id(raw: &str) -> anyhow::Result<ClientId> {
    ClientId::parse(raw).context("invalid --client-id")
}

pub(super) async fn run(
    settings: &Settings,
    store: &dyn Store,
    cmd: ClientsCommand,
    json: bool,
) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let actor = Actor::cli();
    match cmd {
        ClientsCommand::Create(args) => create(settings, store, args, json).await,
        ClientsCommand::List { limit } => list(json, &store.list_clients(limit).await?, |c| {
            format!("{:<36} {:<13} {}", c.id, c.kind.as_str(), c.name)
        }),
        ClientsCommand::Show(ClientArg { client_id: raw }) => {
            let Some(client) = store.find_client(&client_id(&raw)?).await? else {
                bail!("no client {raw}");
            };
            println!("{}", serde_json::to_string_pretty(&client)?);
            Ok(())
        }
        ClientsCommand::Update(args) => {
            let raw = args.client_id.clone();
            let id = client_id(&raw)?;
            let client = match clients::update(store, &id, args.change(), now, &actor).await {
                Err(UpdateError::NotFound) => bail!("no client {raw}"),
                other => other?,
            };
            emit(
                json,
                &serde_json::to_value(&client)?,
                &format!("Updated client {} ({}).", client.id, client.name),
            );
            Ok(())
        }
        ClientsCommand::Disable(ClientArg { client_id: raw }) => {
            set_disabled(store, &client_id(&raw)?, true, &actor, json).await
        }
        ClientsCommand::Enable(ClientArg { client_id: raw }) => {
            set_disabled(store, &client_id(&raw)?, false, &actor, json).await
        }
        ClientsCommand::Delete(ClientArg { client_id: raw }) => {
            if !clients::delete(store, &client_id(&raw)?, now, &actor).await? {
                bail!("no client {raw}");
            }
            emit(
                json,
                &json!({ "client_id": raw, "deleted": true }),
                &format!("Deleted client {raw}."),
            );
            Ok(())
        }
        ClientsCommand::RotateSecret(ClientArg { client_id: raw }) => {
            let Some(secret) =
                clients::rotate_secret(store, &client_id(&raw)?, now, &actor).await?
            else {
                bail!("no confidential client {raw}");
            };
            emit(
                json,
                &json!({ "client_id": raw, "client_secret": secret.expose() }),
                &format!(
                    "New client_secret for {raw}: {}\nThe old secret no longer works.",
                    secret.expose()
                ),
            );
            Ok(())
        }
    }
}

async fn create(
    settings: &Settings,
    store: &dyn Store,
    args: CreateArgs,
    json: bool,
) -> anyhow::Result<()> {
    let algorithms = &settings.keys.algorithms;
    clients::check_id_token_alg(args.id_token_alg, algorithms).with_context(|| {
        format!(
            "--id-token-alg: keys.algorithms is {:?}",
            algorithms.iter().map(|a| a.as_str()).collect::<Vec<_>>()
        )
    })?;
    let registration = args.registration()?;
    let (client, secret) =
        clients::register(store, registration, SystemClock.now(), &Actor::cli()).await?;
    let mut value = serde_json::to_value(&client)?;
    if let (Some(secret), serde_json::Value::Object(map)) = (&secret, &mut value) {
        map.insert("client_secret".into(), secret.expose().into());
    }
    let text = match &secret {
        Some(secret) => format!(
            "Created client {} ({}).\nclient_secret: {}\nStore the secret now: it is not shown again.",
            client.id,
            client.name,
            secret.expose()
        ),
        None => format!("Created client {} ({}).", client.id, client.name),
    };
    emit(json, &value, &text);
    Ok(())
}

async fn set_disabled(
    store: &dyn Store,
    id: &ClientId,
    disabled: bool,
    actor: &Actor,
    json: bool,
) -> anyhow::Result<()> {
    let changed = match clients::set_disabled(store, id, disabled, SystemClock.now(), actor).await {
        Err(UpdateError::NotFound) => bail!("no client {id}"),
        other => other?,
    };
    let state = if disabled { "disabled" } else { "enabled" };
    emit(
        json,
        &json!({ "client_id": id.as_str(), "disabled": disabled, "changed": changed }),
        &if changed {
            format!("Client {id} is now {state}.")
        } else {
            format!("Client {id} was already {state}.")
        },
    );
    Ok(())
}
