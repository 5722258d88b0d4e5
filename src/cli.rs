//! The command line: `serve`, `migrate`, `users …`, `clients …`, `sessions …`, `keys …`,
//! `audit …`. Commands work directly on the database named by the configuration and call
//! the same functions as the server. Secrets are read from a prompt, or from stdin when it
//! is not a terminal, never from arguments (which end up in shell history and `ps`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::audit::{Actor, AuditEvent, AuditKind, AuditQuery, Outcome};
use crate::clock::{Clock, SystemClock};
use crate::config::{Settings, Sources, redact_url};
use crate::domain::client::{AuthMethod, ClientId, ClientKind};
use crate::domain::user::{NewUser, Password, User, Username};
use crate::keys::{KeyRing, MasterKey, RetireOutcome, RotationOutcome};
use crate::password::PasswordHasher;
use crate::startup::Application;
use crate::storage::{self, PasswordChange, Store};

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
    Serve,
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
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the signing keys and their states.
    List,
    /// Rotate now: current → retired, next → current, and a new next key.
    Rotate,
    /// Emergency: unpublish a key at once; tokens it signed stop verifying. If it was
    /// current, next is promoted.
    Retire {
        #[arg(long)]
        kid: String,
    },
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
        /// confidential (server-side web app), spa (browser app) or native (mobile/desktop).
        #[arg(long, value_parser = parse_kind)]
        kind: ClientKind,
        /// An explicit client_id (infrastructure as code); a random one otherwise.
        #[arg(long)]
        client_id: Option<String>,
        /// Repeat for several.
        #[arg(long = "redirect-uri", required = true)]
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
        /// Allowed grant types (default: authorization_code).
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// Trusted first-party application: no consent page.
        #[arg(long)]
        first_party: bool,
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

fn parse_auth_method(s: &str) -> Result<AuthMethod, String> {
    AuthMethod::parse(s)
        .ok_or_else(|| "expected client_secret_basic, client_secret_post or none".to_owned())
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Sign a user out everywhere.
    Revoke {
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest audit events.
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&Sources::from_env(cli.config.clone()))?;
    let json = cli.json;
    match cli.command {
        Command::Serve => serve(settings).await,
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
            let result = clients(store.as_ref(), cmd, json).await;
            store.close().await;
            result
        }
        Command::Sessions(SessionsCommand::Revoke { user }) => {
            let store = open_migrated(&settings).await?;
            let result = async {
                let user = find(store.as_ref(), &user).await?;
                let now = SystemClock.now();
                let audit = AuditEvent::new(
                    now,
                    AuditKind::SessionRevoked,
                    Outcome::Success,
                    &Actor::cli(),
                )
                .user(user.id)
                .detail("scope", "all");
                let n = store
                    .revoke_user_sessions(user.id, now, "admin_revoked", &audit)
                    .await?;
                emit(
                    json,
                    &json!({ "username": user.username, "revoked_sessions": n }),
                    &format!("Revoked {n} session(s) of {}.", user.username),
                );
                Ok(())
            }
            .await;
            store.close().await;
            result
        }
        Command::Keys(cmd) => {
            let store = open_migrated(&settings).await?;
            let result = keys(&settings, Arc::clone(&store), cmd, json).await;
            store.close().await;
            result
        }
        Command::Audit(AuditCommand::List { kind, user, limit }) => {
            let store = open_migrated(&settings).await?;
            let result = async {
                let user_id = match user {
                    Some(u) => Some(find(store.as_ref(), &u).await?.id),
                    None => None,
                };
                let rows = store
                    .list_audit(&AuditQuery {
                        kind,
                        user_id,
                        limit,
                    })
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    for r in rows {
                        println!(
                            "{}  {:<22} {:<8} user={} ip={} {}",
                            crate::http::pages::format_time(r.at),
                            r.kind,
                            r.outcome,
                            r.user_id
                                .map(|u| u.to_string())
                                .unwrap_or_else(|| "-".into()),
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

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let bind = settings.server.bind.clone();
    let issuer = settings.issuer.clone();
    let db = redact_url(&settings.database.url);
    let app = Application::build(settings, Arc::new(SystemClock)).await?;
    tracing::info!(%bind, %issuer, database = %db, "portcullis is listening");
    app.run_until_stopped().await?;
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
            let username = Username::parse(&username).context("invalid --username")?;
            let email = email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
            if let Some(e) = &email {
                if !e.contains('@') || e.len() > 254 {
                    bail!("invalid --email: expected an address like alice@example.com");
                }
            }
            let password_hash = if no_password {
                None
            } else {
                let password = read_new_password(settings)?;
                Some(hasher(settings)?.hash(password).await?)
            };
            let now = clock.now();
            let audit = AuditEvent::new(now, AuditKind::UserCreated, Outcome::Success, &actor)
                .detail("username", username.as_str());
            let user = store
                .create_user(
                    &NewUser {
                        username,
                        email,
                        name: name.filter(|n| !n.trim().is_empty()),
                        password_hash,
                    },
                    now,
                    &audit,
                )
                .await?;
            emit(
                json,
                &serde_json::to_value(&user)?,
                &format!("Created user {} ({}).", user.username, user.id),
            );
        }
        UsersCommand::SetPassword { username } => {
            let user = find(store, &username).await?;
            let password = read_new_password(settings)?;
            let hash = hasher(settings)?.hash(password).await?;
            let now = clock.now();
            let audit = AuditEvent::new(
                now,
                AuditKind::UserPasswordChanged,
                Outcome::Success,
                &actor,
            )
            .user(user.id);
            let key = crate::auth::throttle_key(Some(&user.username), user.username.as_str());
            let change = PasswordChange::Reset {
                throttle_key: &key,
                audit: &audit,
            };
            store.set_password_hash(user.id, &hash, now, change).await?;
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

async fn clients(store: &dyn Store, cmd: ClientsCommand, json: bool) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let actor = Actor::cli();
    let client_id = |raw: &str| ClientId::parse(raw).context("invalid --client-id");
    match cmd {
        ClientsCommand::Create {
            name,
            kind,
            client_id,
            redirect_uris,
            post_logout_redirect_uris,
            allowed_origins,
            auth_method,
            scopes,
            grant_types,
            first_party,
        } => {
            let (client, secret) = crate::clients::register(
                store,
                crate::clients::Registration {
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
                },
                now,
                &actor,
            )
            .await?;
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

async fn keys(
    settings: &Settings,
    store: Arc<dyn Store>,
    cmd: KeysCommand,
    json: bool,
) -> anyhow::Result<()> {
    if let KeysCommand::List = cmd {
        let rows: Vec<serde_json::Value> = store
            .list_signing_keys()
            .await?
            .into_iter()
            .map(|k| {
                let t = |t: Option<time::OffsetDateTime>| {
                    t.and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                };
                json!({
                    "kid": k.kid,
                    "alg": k.alg,
                    "state": k.state,
                    "created_at": t(Some(k.created_at)),
                    "activated_at": t(k.activated_at),
                    "retired_at": t(k.retired_at),
                    "remove_after": t(k.remove_after),
                })
            })
            .collect();
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
    let master = MasterKey::load(&settings.keys).context("loading the master key")?;
    let ring = KeyRing::load_or_init_with(
        store,
        master,
        Arc::new(SystemClock),
        crate::keys::retention(settings),
    )
    .await
    .context("loading the signing keys")?;
    match cmd {
        KeysCommand::List => {}
        KeysCommand::Rotate => {
            let outcome = ring.rotate_by(&Actor::cli()).await?;
            let text = match &outcome {
                RotationOutcome::Rotated {
                    retired, current, ..
                } => format!(
                    "Rotated: {current} signs now; {retired} is retired (published until its tokens expire). Other instances pick this up within keys.reload_interval."
                ),
                RotationOutcome::LostRace { current } => format!(
                    "Another rotation happened at the same time; the current key is {}.",
                    current.as_deref().unwrap_or("-")
                ),
            };
            emit(json, &serde_json::to_value(&outcome)?, &text);
        }
        KeysCommand::Retire { kid } => {
            let outcome = ring.retire(&kid, &Actor::cli()).await?;
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
    let now = SystemClock.now();
    let kind = if disabled {
        AuditKind::UserDisabled
    } else {
        AuditKind::UserEnabled
    };
    let audit = AuditEvent::new(now, kind, Outcome::Success, &Actor::cli()).user(user.id);
    let changed = store
        .set_user_disabled(user.id, disabled, now, &audit)
        .await?;
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

async fn find(store: &dyn Store, username: &str) -> anyhow::Result<User> {
    let name = Username::parse(username).context("invalid username")?;
    match store.find_user(&name).await? {
        Some((user, _)) => Ok(user),
        None => bail!("no user named {name}"),
    }
}

fn hasher(settings: &Settings) -> anyhow::Result<PasswordHasher> {
    Ok(PasswordHasher::new(&settings.password)?)
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
