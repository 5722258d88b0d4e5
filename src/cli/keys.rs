//! `keys …`: signing keys and the master key, through `crate::keys` like
//! `/admin/v1/keys`.

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use secrecy::ExposeSecret as _;

use super::emit;
use super::prompt::read_secret;
use crate::audit::Actor;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::jws::SigningAlg;
use crate::keys::{KeyRing, MasterKey, RetireOutcome, RotationOutcome, Successor};
use crate::storage::Store;

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
        new_key_file: Option<std::path::PathBuf>,
    },
}

pub(super) fn parse_alg(s: &str) -> Result<SigningAlg, String> {
    SigningAlg::parse(s).ok_or_else(|| "expected RS256, ES256 or EdDSA".to_owned())
}

pub(super) async fn run(
    settings: &Settings,
    store: &Arc<dyn Store>,
    cmd: KeysCommand,
    json: bool,
) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::List => list(store.as_ref(), json).await,
        KeysCommand::RotateMasterKey { new_key_file } => {
            rotate_master_key(settings, store.as_ref(), new_key_file, json).await
        }
        KeysCommand::Rotate { alg } => {
            let ring = ring(settings, store).await?;
            let outcomes = match alg {
                Some(alg) => vec![ring.rotate_alg_by(alg, &Actor::cli()).await?],
                None => ring.rotate_by(&Actor::cli()).await?,
            };
            let text: Vec<String> = outcomes.iter().map(rotated).collect();
            emit(
                json,
                &serde_json::to_value(&outcomes)?,
                &format!(
                    "{}\nOther instances pick this up at once on Postgres (NOTIFY), otherwise \
                     within keys.reload_interval.",
                    text.join("\n")
                ),
            );
            Ok(())
        }
        KeysCommand::Retire { kid, no_successor } => {
            let ring = ring(settings, store).await?;
            let successor = if no_successor {
                Successor::None
            } else {
                Successor::Replace
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
            Ok(())
        }
    }
}

async fn list(store: &dyn Store, json: bool) -> anyhow::Result<()> {
    let rows: Vec<serde_json::Value> = crate::keys::list(store)
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
    Ok(())
}

/// The key ring as the server loads it (creating the first keys on a new database).
async fn ring(settings: &Settings, store: &Arc<dyn Store>) -> anyhow::Result<KeyRing> {
    let master = MasterKey::load(&settings.keys).context("loading the master key")?;
    KeyRing::load_or_init_for(Arc::clone(store), master, Arc::new(SystemClock), settings)
        .await
        .context("loading the signing keys")
}

fn rotated(outcome: &RotationOutcome) -> String {
    match outcome {
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
    }
}

async fn rotate_master_key(
    settings: &Settings,
    store: &dyn Store,
    new_key_file: Option<std::path::PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    // Never generates a key: the keys are under the one they were encrypted with.
    let current =
        MasterKey::load_existing(&settings.keys).context("loading the current master key")?;
    let new = match new_key_file {
        Some(path) => MasterKey::from_file(&path),
        None => {
            let secret = read_secret("New master key (base64): ")?;
            MasterKey::from_base64(secret.expose_secret())
        }
    }
    .context("reading the new master key")?;
    let rotation =
        crate::keys::rotate_master_key(store, &current, &new, SystemClock.now(), &Actor::cli())
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
    Ok(())
}
