//! The command line: `serve`, `migrate`, `users …`, `clients …`, `sessions …`, `keys …`,
//! `audit …`, `doctor`. Commands work directly on the database named by the configuration and call
//! the same functions as the server. Secrets are read from a prompt, or from stdin when it
//! is not a terminal, never from arguments (which end up in shell history and `ps`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::audit::{Actor, AuditSearch};
use crate::clock::{Clock, SystemClock};
use crate::config::{Settings, Sources, redact_url};
use crate::domain::client::TokenDelivery;
use crate::domain::client::{AuthMethod, ClientId, ClientKind};
use crate::domain::jws::SigningAlg;
use crate::domain::throttle::ThrottleKeys;
use crate::domain::user::{Password, User, Username, parse_email};
use crate::keys::{
    KeyError, KeyRing, MasterKey, RetireOutcome, RotationOutcome, rotate_master_key,
};
use crate::password::PasswordHasher;
use crate::startup::Application;
use crate::storage::{self, Store};
use crate::users::{self, NewAccount, ProfileChange, UserError};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An OAuth 2.0 / OpenID Connect provider"
)]
pub struct Cli {
    /// A configuration file layered over everything else.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (applies pending migrations first unless disabled).
    Serve {
        /// Development only: also seed a demo user and the example SPA's client, and serve
        /// the example SPA (examples/spa) on its own origin.
        #[arg(long)]
        demo: bool,
        /// Where the demo SPA listens (with --demo).
        #[arg(long, default_value = "127.0.0.1:5173", value_name = "HOST:PORT")]
        demo_spa_bind: String,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage user accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Manage browser sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Read the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check this deployment (configuration, master key, database, migrations, signing
    /// keys) and say what to change. Reads only. Exits 1 if a check fails.
    Doctor,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the signing keys: algorithm, state and dates.
    List,
    /// Rotate now, every algorithm in keys.algorithms (or only --alg): current → retired,
    /// next → current, and a new next key.
    Rotate {
        /// RS256, ES256 or EdDSA.
        #[arg(long, value_parser = parse_alg)]
        alg: Option<SigningAlg>,
    },
    /// Emergency: unpublish a key at once; tokens it signed stop verifying. If it was
    /// current, next is promoted.
    Retire {
        /// The key id (a kid may begin with `-`: it is taken as the value, not an option).
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
        /// Do not replace the key: only for removing an algorithm that is no longer in
        /// keys.algorithms (retire its next key, then its current key).
        #[arg(long)]
        no_successor: bool,
    },
    /// Re-encrypt every private signing key under a new master key, read from
    /// --new-key-file or else from a prompt or stdin (never from the command line). The
    /// current key comes from PORTCULLIS_MASTER_KEY or keys.master_key_file as usual.
    /// Restart every instance with the new key afterwards.
    RotateMasterKey {
        /// A file holding the new base64 master key (`openssl rand -base64 32`).
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
    },
}

fn parse_alg(s: &str) -> Result<SigningAlg, String> {
    SigningAlg::parse(s).ok_or_else(|| "expected RS256, ES256 or EdDSA".to_owned())
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password is read from a prompt or stdin.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Create the account without a password (it cannot sign in until one is set).
        #[arg(long)]
        no_password: bool,
    },
    /// Replace a user's password (read from a prompt or stdin) and sign out their sessions.
    SetPassword {
        #[arg(long)]
        username: String,
    },
    /// Disable a user: no sign-in, and every session ends.
    Disable {
        #[arg(long)]
        username: String,
    },
    /// Re-enable a disabled user.
    Enable {
        #[arg(long)]
        username: String,
    },
    /// Change a user's email address, its verification, or display name. A new address
    /// starts unverified unless --email-verified is given.
    Update {
        #[arg(long)]
        username: String,
        /// An empty value removes the address.
        #[arg(long)]
        email: Option<String>,
        /// An empty value removes the name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email_verified: Option<bool>,
    },
    /// Delete a user for good: sessions, consents and pending codes go too; the audit
    /// trail stays.
    Delete {
        #[arg(long)]
        username: String,
    },
    /// List users.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client. A confidential client's secret is printed once.
    Create {
        /// A display name shown on the consent page.
        #[arg(long)]
        name: String,
        /// An admin API client: confidential, client_credentials only, scope
        /// portcullis:admin (its secret obtains tokens for /admin/v1).
        #[arg(long, conflicts_with_all = [
            "kind", "redirect_uris", "post_logout_redirect_uris", "allowed_origins",
            "auth_method", "scopes", "grant_types", "first_party", "pkce_optional",
            "introspection",
        ])]
        admin: bool,
        /// confidential (server-side web app or service), spa (browser app) or native
        /// (mobile/desktop).
        #[arg(long, value_parser = parse_kind, required_unless_present = "admin")]
        kind: Option<ClientKind>,
        /// An explicit client_id (infrastructure as code); a random one otherwise.
        #[arg(long)]
        client_id: Option<String>,
        /// Repeat for several (required for the authorization_code grant).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// CORS origins for browser apps (default for spa: the redirect URIs' origins).
        #[arg(long = "allowed-origin")]
        allowed_origins: Vec<String>,
        /// client_secret_basic (default for confidential) or client_secret_post.
        #[arg(long, value_parser = parse_auth_method)]
        auth_method: Option<AuthMethod>,
        /// Allowed scopes (default: openid profile email).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Allowed grant types: authorization_code (default), refresh_token,
        /// client_credentials (confidential clients only).
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// Trusted first-party application: granted every scope it asks for, including
        /// offline_access, without a consent page (OpenID Connect Core §11 allows such a
        /// condition for offline access), unless the request says prompt=consent.
        #[arg(long)]
        first_party: bool,
        /// How refresh tokens reach the client: body (default) or cookie (spa clients on
        /// the provider's site: an HttpOnly cookie script cannot read).
        #[arg(long, value_parser = parse_delivery, default_value = "body")]
        refresh_token_delivery: TokenDelivery,
        /// id_token_signed_response_alg: RS256 (default), ES256 or EdDSA; must be one of
        /// keys.algorithms.
        #[arg(long, value_parser = parse_alg)]
        id_token_alg: Option<SigningAlg>,
        /// Confidential clients only: accept authorization requests without PKCE (the
        /// client relies on its secret and the nonce, RFC 9700 §2.1.1), e.g. for the
        /// OpenID Foundation's certification suite. A challenge it sends is still enforced.
        #[arg(long)]
        pkce_optional: bool,
        /// Confidential clients only: may introspect access tokens issued to other
        /// clients (a resource server, RFC 7662 §4). Every client may introspect its own.
        #[arg(long)]
        introspection: bool,
    },
    /// List clients.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Show one client.
    Show {
        #[arg(long)]
        client_id: String,
    },
    /// Change a client under the registration rules; options left out stay as they are,
    /// a repeated option replaces the whole list.
    Update {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "redirect-uri")]
        redirect_uris: Option<Vec<String>>,
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Option<Vec<String>>,
        #[arg(long = "allowed-origin")]
        allowed_origins: Option<Vec<String>>,
        #[arg(long, value_parser = parse_auth_method)]
        auth_method: Option<AuthMethod>,
        #[arg(long = "scope")]
        scopes: Option<Vec<String>>,
        #[arg(long = "grant-type")]
        grant_types: Option<Vec<String>>,
        /// true: a trusted first-party application: granted every scope it asks for, including
        /// offline_access, without a consent page (OpenID Connect Core §11 allows such a
        /// condition for offline access), unless the request says prompt=consent.
        #[arg(long)]
        first_party: Option<bool>,
        /// true (the default for new clients) or false (confidential clients only).
        #[arg(long)]
        require_pkce: Option<bool>,
        /// true: may introspect access tokens issued to other clients (confidential
        /// clients only); false: only its own.
        #[arg(long)]
        introspection: Option<bool>,
    },
    /// Suspend a client: refused at /authorize and /token, and its access tokens are
    /// refused, until it is enabled again.
    Disable {
        #[arg(long)]
        client_id: String,
    },
    /// Re-enable a disabled client (its unexpired tokens work again).
    Enable {
        #[arg(long)]
        client_id: String,
    },
    /// Delete a client.
    Delete {
        #[arg(long)]
        client_id: String,
    },
    /// Replace a confidential client's secret (printed once).
    RotateSecret {
        #[arg(long)]
        client_id: String,
    },
}

fn parse_kind(s: &str) -> Result<ClientKind, String> {
    ClientKind::parse(s).ok_or_else(|| "expected confidential, spa or native".to_owned())
}

fn parse_delivery(s: &str) -> Result<TokenDelivery, String> {
    TokenDelivery::parse(s).ok_or_else(|| "expected body or cookie".to_owned())
}

fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| "expected an RFC 3339 time such as 2026-01-31T00:00:00Z".to_owned())
}

fn parse_auth_method(s: &str) -> Result<AuthMethod, String> {
    AuthMethod::parse(s)
        .ok_or_else(|| "expected client_secret_basic, client_secret_post or none".to_owned())
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// A user's live sessions, most recently used first.
    List {
        #[arg(long)]
        user: String,
    },
    /// Sign a user out everywhere, or of one session.
    Revoke {
        #[arg(long)]
        user: String,
        /// Only this session (an id from `sessions list`).
        #[arg(long)]
        session: Option<uuid::Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest audit events.
    List {
        #[arg(long)]
        kind: Option<String>,
        /// A username.
        #[arg(long)]
        user: Option<String>,
        /// Events concerning this client.
        #[arg(long)]
        client: Option<String>,
        /// Events made by this admin API client.
        #[arg(long)]
        actor_client: Option<String>,
        /// RFC 3339, e.g. 2026-01-31T00:00:00Z (inclusive).
        #[arg(long, value_parser = parse_time)]
        since: Option<time::OffsetDateTime>,
        /// RFC 3339 (exclusive).
        #[arg(long, value_parser = parse_time)]
        until: Option<time::OffsetDateTime>,
        /// Only events older than this id (paging).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&Sources::from_env(cli.config.clone()))?;
    let json = cli.json;
    match cli.command {
        Command::Serve { demo: false, .. } => serve(settings).await,
        Command::Serve {
            demo: true,
            demo_spa_bind,
        } => serve_demo(settings, &demo_spa_bind).await,
        Command::Migrate => {
            let store = open(&settings).await?;
            store.migrate().await.context("applying migrations")?;
            store.close().await;
            emit(json, &json!({ "migrated": true }), "Migrations applied.");
            Ok(())
        }
        Command::Users(cmd) => {
            let store = open_migrated(&settings).await?;
            let result = users(&settings, store.as_ref(), cmd, json).await;
            store.close().await;
            result
        }
        Command::Clients(cmd) => {
            let store = open_migrated(&settings).await?;
            let result = clients(&settings, store.as_ref(), cmd, json).await;
            store.close().await;
            result
        }
        Command::Sessions(cmd) => {
            let store = open_migrated(&settings).await?;
            let result = sessions(store.as_ref(), cmd, json).await;
            store.close().await;
            result
        }
        Command::Keys(cmd) => {
            let store = open_migrated(&settings).await?;
            let result = keys(&settings, Arc::clone(&store), cmd, json).await;
            store.close().await;
            result
        }
        Command::Doctor => doctor(&settings, json).await,
        Command::Audit(AuditCommand::List {
            kind,
            user,
            client,
            actor_client,
            since,
            until,
            before,
            limit,
        }) => {
            let store = open_migrated(&settings).await?;
            let result = async {
                let user_id = match user {
                    Some(u) => Some(find(store.as_ref(), &u).await?.id),
                    None => None,
                };
                let rows = store
                    .search_audit(&AuditSearch {
                        kind,
                        user_id,
                        client_id: client,
                        actor_client_id: actor_client,
                        since,
                        until,
                        before,
                        limit: limit.clamp(1, 1000),
                    })
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    for r in rows {
                        println!(
                            "{:>6} {}  {:<22} {:<8} user={} client={} by={} ip={} {}",
                            r.id,
                            crate::http::pages::format_time(r.at),
                            r.kind,
                            r.outcome,
                            r.user_id
                                .map(|u| u.to_string())
                                .unwrap_or_else(|| "-".into()),
                            r.client_id.as_deref().unwrap_or("-"),
                            r.actor_client_id
                                .as_deref()
                                .or(r.request_id.as_deref().filter(|id| *id == "cli"))
                                .unwrap_or("-"),
                            r.ip.as_deref().unwrap_or("-"),
                            r.details
                        );
                    }
                }
                Ok(())
            }
            .await;
            store.close().await;
            result
        }
    }
}

async fn doctor(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let production = std::env::var("PORTCULLIS_ENV").as_deref() == Ok("production");
    let checks = crate::doctor::run(settings, production, SystemClock.now()).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            println!("{:<4}  {:<18}  {}", c.status.as_str(), c.check, c.message);
        }
    }
    let failed = checks
        .iter()
        .filter(|c| c.status == crate::doctor::Status::Fail)
        .count();
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let bind = settings.server.bind.clone();
    let issuer = settings.issuer.clone();
    let db = redact_url(&settings.database.url);
    let app = Application::build(settings, Arc::new(SystemClock)).await?;
    tracing::info!(%bind, %issuer, database = %db, "portcullis is listening");
    app.run_until_signalled().await?;
    Ok(())
}

async fn serve_demo(settings: Settings, spa_bind: &str) -> anyhow::Result<()> {
    if std::env::var("PORTCULLIS_ENV").as_deref() == Ok("production") {
        bail!(
            "--demo seeds a user with a published password: never with PORTCULLIS_ENV=production"
        );
    }
    let listener = std::net::TcpListener::bind(spa_bind)
        .with_context(|| format!("binding the demo SPA to {spa_bind}"))?;
    let addr = listener.local_addr()?;
    let demo = crate::demo::DemoApp {
        origin: format!("http://{addr}"),
        issuer: settings.issuer.clone(),
    };
    let issuer = settings.issuer.clone();
    let app = Application::build(settings.clone(), Arc::new(SystemClock)).await?;
    let store = open(&settings).await?;
    crate::demo::seed(store.as_ref(), &settings, &SystemClock, &demo).await?;
    store.close().await;
    let spa = crate::demo::spa_server(listener, demo.clone())?;
    let spa_handle = spa.handle();
    let spa_task = tokio::spawn(spa);
    println!(
        "\nPortcullis demo\n  provider:   {issuer}\n  demo app:   {}   <- open this and click \"Sign in\"\n  sign in as: {} / {}\n",
        demo.origin,
        crate::demo::DEMO_USERNAME,
        crate::demo::DEMO_PASSWORD
    );
    tracing::info!(%issuer, spa = %demo.origin, "portcullis demo is listening");
    let result = app.run_until_signalled().await;
    spa_handle.stop(true).await;
    spa_task.abort();
    result?;
    Ok(())
}

async fn open(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    storage::connect(&settings.database)
        .await
        .with_context(|| format!("opening {}", redact_url(&settings.database.url)))
}

async fn open_migrated(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let store = open(settings).await?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

async fn users(
    settings: &Settings,
    store: &dyn Store,
    cmd: UsersCommand,
    json: bool,
) -> anyhow::Result<()> {
    let clock = SystemClock;
    let actor = Actor::cli();
    match cmd {
        UsersCommand::Create {
            username,
            email,
            name,
            no_password,
        } => {
            // Refuse a bad name or address before prompting for a password.
            Username::parse(&username).context("invalid --username")?;
            if let Some(e) = &email {
                parse_email(e).context("invalid --email")?;
            }
            let password = if no_password {
                None
            } else {
                Some(read_new_password(settings)?)
            };
            let account = NewAccount {
                username,
                email,
                name,
                password,
            };
            let user = match users::create(store, &hasher(settings)?, account, clock.now(), &actor)
                .await
            {
                Err(UserError::Conflict(_)) => bail!("a user with this username already exists"),
                other => other?,
            };
            emit(
                json,
                &serde_json::to_value(&user)?,
                &format!("Created user {} ({}).", user.username, user.id),
            );
        }
        UsersCommand::SetPassword { username } => {
            let user = find(store, &username).await?;
            let password = read_new_password(settings)?;
            let keys = throttle_keys(settings)?;
            users::set_password(
                store,
                &hasher(settings)?,
                keys.as_ref(),
                &user,
                password,
                clock.now(),
                &actor,
            )
            .await?;
            emit(
                json,
                &json!({ "username": user.username, "password_changed": true }),
                &format!(
                    "Password of {} changed; their sessions were signed out.",
                    user.username
                ),
            );
        }
        UsersCommand::Disable { username } => {
            set_disabled(store, &username, true, json).await?;
        }
        UsersCommand::Enable { username } => {
            set_disabled(store, &username, false, json).await?;
        }
        UsersCommand::Update {
            username,
            email,
            name,
            email_verified,
        } => {
            let user = find(store, &username).await?;
            let blank = |v: String| (!v.trim().is_empty()).then_some(v);
            let change = ProfileChange {
                email: email.map(blank),
                name: name.map(blank),
                email_verified,
            };
            let user = users::update_profile(store, user.id, change, clock.now(), &actor).await?;
            emit(
                json,
                &serde_json::to_value(&user)?,
                &format!("Updated user {}.", user.username),
            );
        }
        UsersCommand::Delete { username } => {
            let user = find(store, &username).await?;
            let keys = throttle_keys(settings)?;
            if !users::delete(store, keys.as_ref(), &user, clock.now(), &actor).await? {
                bail!("no user named {}", user.username);
            }
            emit(
                json,
                &json!({ "username": user.username, "deleted": true }),
                &format!("Deleted user {} and their sessions.", user.username),
            );
        }
        UsersCommand::List { limit } => {
            let users = store.list_users(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                for u in users {
                    println!(
                        "{}  {:<24} {:<28} {}",
                        u.id,
                        u.username,
                        u.email.as_deref().unwrap_or("-"),
                        if u.disabled { "disabled" } else { "active" }
                    );
                }
            }
        }
    }
    Ok(())
}

async fn clients(
    settings: &Settings,
    store: &dyn Store,
    cmd: ClientsCommand,
    json: bool,
) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let actor = Actor::cli();
    let client_id = |raw: &str| ClientId::parse(raw).context("invalid --client-id");
    match cmd {
        ClientsCommand::Create {
            name,
            admin,
            kind,
            client_id,
            redirect_uris,
            post_logout_redirect_uris,
            allowed_origins,
            auth_method,
            scopes,
            grant_types,
            first_party,
            refresh_token_delivery,
            id_token_alg,
            pkce_optional,
            introspection,
        } => {
            crate::clients::check_id_token_alg(id_token_alg, &settings.keys.algorithms)
                .with_context(|| {
                    format!(
                        "--id-token-alg: keys.algorithms is {:?}",
                        settings
                            .keys
                            .algorithms
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                    )
                })?;
            let registration = match (admin, kind) {
                (true, _) => crate::clients::Registration::admin(name, client_id),
                (false, Some(kind)) => crate::clients::Registration {
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
                    id_token_signed_response_alg: id_token_alg,
                    require_pkce: !pkce_optional,
                    introspection,
                },
                (false, None) => bail!("--kind is required (or --admin)"),
            };
            let (client, secret) =
                crate::clients::register(store, registration, now, &actor).await?;
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
        }
        ClientsCommand::List { limit } => {
            let clients = store.list_clients(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&clients)?);
            } else {
                for c in clients {
                    println!("{:<36} {:<13} {}", c.id, c.kind.as_str(), c.name);
                }
            }
        }
        ClientsCommand::Show { client_id: raw } => {
            let Some(client) = store.find_client(&client_id(&raw)?).await? else {
                bail!("no client {raw}");
            };
            println!("{}", serde_json::to_string_pretty(&client)?);
        }
        ClientsCommand::Update {
            client_id: raw,
            name,
            redirect_uris,
            post_logout_redirect_uris,
            allowed_origins,
            auth_method,
            scopes,
            grant_types,
            first_party,
            require_pkce,
            introspection,
        } => {
            let change = crate::clients::ClientUpdate {
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
                disabled: None,
            };
            let client =
                match crate::clients::update(store, &client_id(&raw)?, change, now, &actor).await {
                    Err(crate::clients::UpdateError::NotFound) => bail!("no client {raw}"),
                    other => other?,
                };
            emit(
                json,
                &serde_json::to_value(&client)?,
                &format!("Updated client {} ({}).", client.id, client.name),
            );
        }
        ClientsCommand::Disable { client_id: raw } => {
            set_client_disabled(store, &client_id(&raw)?, true, now, &actor, json).await?;
        }
        ClientsCommand::Enable { client_id: raw } => {
            set_client_disabled(store, &client_id(&raw)?, false, now, &actor, json).await?;
        }
        ClientsCommand::Delete { client_id: raw } => {
            if !crate::clients::delete(store, &client_id(&raw)?, now, &actor).await? {
                bail!("no client {raw}");
            }
            emit(
                json,
                &json!({ "client_id": raw, "deleted": true }),
                &format!("Deleted client {raw}."),
            );
        }
        ClientsCommand::RotateSecret { client_id: raw } => {
            let Some(secret) =
                crate::clients::rotate_secret(store, &client_id(&raw)?, now, &actor).await?
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
        }
    }
    Ok(())
}

async fn sessions(store: &dyn Store, cmd: SessionsCommand, json: bool) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let actor = Actor::cli();
    match cmd {
        SessionsCommand::List { user } => {
            let user = find(store, &user).await?;
            let sessions = users::sessions(store, user.id, now).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sessions)?);
            } else {
                for s in sessions {
                    println!(
                        "{}  signed in {}  last seen {}  ip={} {}",
                        s.id,
                        crate::http::pages::format_time(s.auth_time),
                        crate::http::pages::format_time(s.last_seen_at),
                        s.ip.as_deref().unwrap_or("-"),
                        s.user_agent.as_deref().unwrap_or("-"),
                    );
                }
            }
        }
        SessionsCommand::Revoke {
            user,
            session: Some(session),
        } => {
            let user = find(store, &user).await?;
            let session = crate::domain::session::SessionId(session);
            if !users::revoke_session(store, user.id, session, now, &actor).await? {
                bail!("{} has no live session {session}", user.username);
            }
            emit(
                json,
                &json!({ "username": user.username, "revoked_sessions": 1 }),
                &format!("Revoked session {session} of {}.", user.username),
            );
        }
        SessionsCommand::Revoke {
            user,
            session: None,
        } => {
            let user = find(store, &user).await?;
            let n = users::revoke_all_sessions(store, user.id, now, &actor).await?;
            emit(
                json,
                &json!({ "username": user.username, "revoked_sessions": n }),
                &format!("Revoked {n} session(s) of {}.", user.username),
            );
        }
    }
    Ok(())
}

async fn keys(
    settings: &Settings,
    store: Arc<dyn Store>,
    cmd: KeysCommand,
    json: bool,
) -> anyhow::Result<()> {
    if let KeysCommand::List = cmd {
        let rows: Vec<serde_json::Value> = crate::keys::list(store.as_ref())
            .await?
            .into_iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        if json {
            println!("{}", serde_json::Value::Array(rows));
        } else {
            for r in rows {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
                println!(
                    "{}  {:<5} {:<7} created={} activated={} retired={} remove_after={}",
                    s(&r["kid"]),
                    s(&r["alg"]),
                    s(&r["state"]),
                    s(&r["created_at"]),
                    s(&r["activated_at"]),
                    s(&r["retired_at"]),
                    s(&r["remove_after"]),
                );
            }
        }
        return Ok(());
    }
    if let KeysCommand::RotateMasterKey { new_key_file } = &cmd {
        // Never generates a key: the keys are under the one they were encrypted with.
        let current =
            MasterKey::load_existing(&settings.keys).context("loading the current master key")?;
        let new = match new_key_file {
            Some(path) => MasterKey::from_file(path),
            None => {
                let secret = read_secret("New master key (base64): ")?;
                MasterKey::from_base64(secrecy::ExposeSecret::expose_secret(&secret))
            }
        }
        .context("reading the new master key")?;
        let rotation = rotate_master_key(
            store.as_ref(),
            &current,
            &new,
            SystemClock.now(),
            &Actor::cli(),
        )
        .await
        .context("re-encrypting the signing keys")?;
        let n = rotation.reencrypted.len();
        emit(
            json,
            &serde_json::to_value(&rotation)?,
            &format!(
                "Re-encrypted {n} signing key(s) under the new master key. Restart every \
                 instance with the new key now: until then they keep signing with the keys \
                 they hold but load no key changes, and the old key no longer starts them."
            ),
        );
        return Ok(());
    }
    let master = MasterKey::load(&settings.keys).context("loading the master key")?;
    let ring = KeyRing::load_or_init_for(store, master, Arc::new(SystemClock), settings)
        .await
        .context("loading the signing keys")?;
    match cmd {
        KeysCommand::List | KeysCommand::RotateMasterKey { .. } => {}
        KeysCommand::Rotate { alg } => {
            let outcomes = match alg {
                Some(alg) => vec![ring.rotate_alg_by(alg, &Actor::cli()).await?],
                None => ring.rotate_by(&Actor::cli()).await?,
            };
            let text: Vec<String> = outcomes
                .iter()
                .map(|outcome| match outcome {
                    RotationOutcome::Rotated {
                        alg,
                        retired,
                        current,
                        ..
                    } => format!(
                        "{alg}: {current} signs now; {retired} is retired (published until its tokens expire)."
                    ),
                    RotationOutcome::LostRace { alg, current } => format!(
                        "{alg}: another rotation happened at the same time; the current key is {}.",
                        current.as_deref().unwrap_or("-")
                    ),
                })
                .collect();
            emit(
                json,
                &serde_json::to_value(&outcomes)?,
                &format!(
                    "{}\nOther instances pick this up at once on Postgres (NOTIFY), otherwise \
                     within keys.reload_interval.",
                    text.join("\n")
                ),
            );
        }
        KeysCommand::Retire { kid, no_successor } => {
            let successor = if no_successor {
                crate::keys::Successor::None
            } else {
                crate::keys::Successor::Replace
            };
            let outcome = ring.retire_with(&kid, successor, &Actor::cli()).await?;
            let text = match &outcome {
                RetireOutcome::Retired {
                    kid,
                    promoted: Some(current),
                    ..
                } => format!(
                    "Retired {kid}; tokens it signed no longer verify. {current} signs now."
                ),
                RetireOutcome::Retired { kid, .. } => {
                    format!("Retired {kid}; tokens it signed no longer verify.")
                }
                RetireOutcome::NotFound { kid } => bail!("no signing key {kid}"),
            };
            emit(json, &serde_json::to_value(&outcome)?, &text);
        }
    }
    Ok(())
}

async fn set_disabled(
    store: &dyn Store,
    username: &str,
    disabled: bool,
    json: bool,
) -> anyhow::Result<()> {
    let user = find(store, username).await?;
    let changed =
        users::set_disabled(store, user.id, disabled, SystemClock.now(), &Actor::cli()).await?;
    let state = if disabled { "disabled" } else { "enabled" };
    emit(
        json,
        &json!({ "username": user.username, "disabled": disabled, "changed": changed }),
        &if changed {
            format!("User {} is now {state}.", user.username)
        } else {
            format!("User {} was already {state}.", user.username)
        },
    );
    Ok(())
}

async fn set_client_disabled(
    store: &dyn Store,
    id: &ClientId,
    disabled: bool,
    now: time::OffsetDateTime,
    actor: &Actor,
    json: bool,
) -> anyhow::Result<()> {
    let changed = match crate::clients::set_disabled(store, id, disabled, now, actor).await {
        Err(crate::clients::UpdateError::NotFound) => bail!("no client {id}"),
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

async fn find(store: &dyn Store, username: &str) -> anyhow::Result<User> {
    let name = Username::parse(username).context("invalid username")?;
    match users::find_by_name(store, name.as_str()).await {
        Err(UserError::NotFound) => bail!("no user named {name}"),
        other => Ok(other?),
    }
}

/// The keys of the lockout counters, from the master key the server uses. With no master
/// key at all a lockout cannot be found, so it is left to expire (`login.failure_window`).
fn throttle_keys(settings: &Settings) -> anyhow::Result<Option<ThrottleKeys>> {
    match MasterKey::load_existing(&settings.keys) {
        Ok(master) => Ok(Some(master.throttle_keys()?)),
        Err(KeyError::NoMasterKey(_)) => {
            eprintln!(
                "warning: no master key, so a lockout of this name is not lifted; it ends \
                 within login.failure_window"
            );
            Ok(None)
        }
        Err(e) => Err(e).context("loading the master key"),
    }
}

fn hasher(settings: &Settings) -> anyhow::Result<PasswordHasher> {
    Ok(PasswordHasher::new(&settings.password)?)
}

/// A secret from a hidden prompt (asked twice) on a terminal; otherwise the first line of
/// stdin.
fn read_secret(prompt: &str) -> anyhow::Result<secrecy::SecretString> {
    use secrecy::{ExposeSecret as _, SecretString};
    if std::io::stdin().is_terminal() {
        let first = SecretString::from(rpassword::prompt_password(prompt)?);
        let second = SecretString::from(rpassword::prompt_password("Repeat it: ")?);
        if first.expose_secret() != second.expose_secret() {
            bail!("the two entries do not match");
        }
        return Ok(first);
    }
    let mut raw = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut raw)
        .context("reading stdin")?;
    let raw = SecretString::from(raw);
    Ok(SecretString::from(
        raw.expose_secret()
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
    ))
}

/// From a hidden prompt (asked twice) on a terminal; otherwise the first line of stdin.
fn read_new_password(settings: &Settings) -> anyhow::Result<Password> {
    let raw = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New password: ")?;
        let second = rpassword::prompt_password("Repeat the password: ")?;
        if first != second {
            bail!("the passwords do not match");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    Ok(Password::new_password(raw, settings.password.min_length)?)
}

fn emit(json: bool, value: &serde_json::Value, text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = if json {
        writeln!(out, "{value}")
    } else {
        writeln!(out, "{text}")
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kid_that_begins_with_a_hyphen_is_a_value() {
        // RFC 7638 thumbprints are base64url: one in 64 begins with `-`.
        let cli = Cli::try_parse_from([
            "portcullis",
            "keys",
            "retire",
            "--kid",
            "-CjZ1o2w",
            "--no-successor",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Keys(KeysCommand::Retire { kid, no_successor }) => {
                assert_eq!(kid, "-CjZ1o2w");
                assert!(no_successor);
            }
            other => panic!("{other:?}"),
        }
    }
}
