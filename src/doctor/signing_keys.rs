//! The signing keys in the database: whether the master key decrypts them, and whether
//! each configured algorithm has a current key that rotates and a next key published in time.

use time::OffsetDateTime;

use super::{Check, Status, check};
use crate::config::{JWKS_MAX_AGE, Settings};
use crate::domain::signing_key::KeyState;
use crate::keys::MasterKey;
use crate::storage::Store;

pub(super) async fn signing_keys(
    settings: &Settings,
    store: &dyn Store,
    master: Option<&MasterKey>,
    now: OffsetDateTime,
) -> Vec<Check> {
    let keys = match store.list_signing_keys().await {
        Ok(k) => k,
        Err(e) => return vec![check("signing_keys", Status::Fail, format!("{e}"))],
    };
    if keys.is_empty() {
        return vec![check(
            "signing_keys",
            Status::Ok,
            "none yet: the server creates them when it first starts",
        )];
    }
    let mut out = Vec::new();
    if let Some(master) = master {
        let unreadable: Vec<&str> = keys
            .iter()
            .filter(|k| {
                master
                    .decrypt(&k.encrypted_private_key, k.kid.as_bytes())
                    .is_err()
            })
            .map(|k| k.kid.as_str())
            .collect();
        if unreadable.is_empty() {
            out.push(check(
                "master_key_matches",
                Status::Ok,
                format!(
                    "all {} signing keys decrypt under this master key",
                    keys.len()
                ),
            ));
        } else {
            out.push(check(
                "master_key_matches",
                Status::Fail,
                format!(
                    "{} of {} signing keys do not decrypt under this master key ({}): the \
                     server will not start; use the key they were encrypted with",
                    unreadable.len(),
                    keys.len(),
                    unreadable.join(", ")
                ),
            ));
        }
    }
    let day = time::Duration::days(1);
    let rotation = time::Duration::try_from(settings.keys.rotation_interval).unwrap_or(day);
    let jwks_cache = time::Duration::try_from(JWKS_MAX_AGE).unwrap_or(day);
    for alg in &settings.keys.algorithms {
        let of = |state: KeyState| {
            keys.iter()
                .filter(|k| k.alg == *alg && k.state == state)
                .collect::<Vec<_>>()
        };
        let (current, next) = (of(KeyState::Current), of(KeyState::Next));
        let name = "signing_keys";
        let Some(current) = current.first() else {
            out.push(check(
                name,
                Status::Warn,
                format!("{alg}: no current key; the server creates one when it starts"),
            ));
            continue;
        };
        let active_since = current.activated_at.unwrap_or(current.created_at);
        if now - active_since > rotation + day {
            out.push(check(
                name,
                Status::Warn,
                format!(
                    "{alg}: the current key {} has signed since {active_since}, longer than \
                     keys.rotation_interval ({}) plus a day: is a server running to rotate it?",
                    current.kid,
                    humantime::format_duration(settings.keys.rotation_interval)
                ),
            ));
            continue;
        }
        match next.first() {
            None => out.push(check(
                name,
                Status::Warn,
                format!(
                    "{alg}: no next key is published, so the next rotation cannot be \
                     pre-announced; the scheduler creates one, or run `portcullis keys rotate`"
                ),
            )),
            Some(n) if now - n.created_at < jwks_cache => out.push(check(
                name,
                Status::Warn,
                format!(
                    "{alg}: the next key {} was published less than the JWKS cache time ago: \
                     do not rotate by hand yet, relying parties may not have it",
                    n.kid
                ),
            )),
            Some(n) => out.push(check(
                name,
                Status::Ok,
                format!(
                    "{alg}: current {} since {active_since}, next {} published since {}",
                    current.kid, n.kid, n.created_at
                ),
            )),
        }
    }
    let stray: Vec<String> = keys
        .iter()
        .filter(|k| k.state != KeyState::Retired)
        .filter(|k| !settings.keys.algorithms.iter().any(|a| k.alg == *a))
        .map(|k| format!("{} ({} {})", k.kid, k.alg, k.state))
        .collect();
    if !stray.is_empty() {
        out.push(check(
            "signing_keys",
            Status::Warn,
            format!(
                "published keys of algorithms not in keys.algorithms: {}; once their tokens \
                 have expired, retire them (next key first) with \
                 `portcullis keys retire --no-successor --kid`",
                stray.join(", ")
            ),
        ));
    }
    out
}
