//! The command line: `serve`, `migrate`, `users …`, `clients …`, `sessions …`, `keys …`,
//! `audit …`, `doctor`. Commands work directly on the database named by the configuration and call
//! the same functions as the server. Secrets are read from a prompt, or from stdin when it
//! is not a terminal, never from arguments (which end up in shell history and `ps`).
//!
//! One file a command group, each with its clap enum and a `run`: `serve.rs` (`serve`,
//! `serve --demo`), `db.rs` (opening the database, `migrate`), `users.rs`, `sessions.rs`,
//! `clients.rs`, `keys.rs`, `audit.rs`, `doctor.rs` (`users/mfa.rs`: `users mfa …`);
//! `prompt.rs` reads secrets.

mod audit;
mod clients;
mod db;
mod doctor;
mod keys;
mod prompt;
mod serve;
mod sessions;
mod users;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use audit::AuditCommand;
pub use clients::ClientsCommand;
pub use keys::KeysCommand;
pub use sessions::SessionsCommand;
pub use users::{MfaCommand, UsersCommand};

use crate::config::{Settings, Sources};

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

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&Sources::from_env(cli.config.clone()))?;
    let json = cli.json;
    match cli.command {
        Command::Serve { demo: false, .. } => serve::run(settings).await,
        Command::Serve {
            demo: true,
            demo_spa_bind,
        } => serve::run_demo(settings, &demo_spa_bind).await,
        Command::Migrate => db::migrate(&settings, json).await,
        Command::Users(cmd) => {
            db::with_store(&settings, async |store| {
                users::run(&settings, store, cmd, json).await
            })
            .await
        }
        Command::Clients(cmd) => {
            db::with_store(&settings, async |store| {
                clients::run(&settings, store.as_ref(), cmd, json).await
            })
            .await
        }
        Command::Sessions(cmd) => {
            db::with_store(&settings, async |store| {
                sessions::run(store.as_ref(), cmd, json).await
            })
            .await
        }
        Command::Audit(cmd) => {
            db::with_store(&settings, async |store| {
                audit::run(store.as_ref(), cmd, json).await
            })
            .await
        }
        Command::Keys(cmd) => {
            db::with_store(&settings, async |store| {
                keys::run(&settings, store, cmd, json).await
            })
            .await
        }
        Command::Doctor => doctor::run(&settings, json).await,
    }
}

/// Prints the JSON value with `--json`, the sentence otherwise.
fn emit(json: bool, value: &serde_json::Value, text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = if json {
        writeln!(out, "{value}")
    } else {
        writeln!(out, "{text}")
    };
}

/// Prints the rows as pretty JSON with `--json`, else one line a row.
fn list<T: serde::Serialize>(
    json: bool,
    rows: &[T],
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
    } else {
        for row in rows {
            println!("{}", line(row));
        }
    }
    Ok(())
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
