//! Secrets typed by an administrator: from a hidden prompt (asked twice) on a terminal,
//! otherwise the first line of stdin; never from arguments.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::Settings;
use crate::domain::user::Password;

/// What to say while reading one kind of secret.
struct Wording {
    prompt: &'static str,
    repeat: &'static str,
    mismatch: &'static str,
    stdin: &'static str,
}

/// A secret from a hidden prompt (asked twice) on a terminal; otherwise the first line of
/// stdin.
pub(super) fn read_secret(prompt: &'static str) -> anyhow::Result<SecretString> {
    read(&Wording {
        prompt,
        repeat: "Repeat it: ",
        mismatch: "the two entries do not match",
        stdin: "reading stdin",
    })
}

/// A new password, held to `password.min_length`.
pub(super) fn read_new_password(settings: &Settings) -> anyhow::Result<Password> {
    let raw = read(&Wording {
        prompt: "New password: ",
        repeat: "Repeat the password: ",
        mismatch: "the passwords do not match",
        stdin: "reading the password from stdin",
    })?;
    Ok(Password::new_password(
        raw.expose_secret().to_owned(),
        settings.password.min_length,
    )?)
}

fn read(wording: &Wording) -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let first = SecretString::from(rpassword::prompt_password(wording.prompt)?);
        let second = SecretString::from(rpassword::prompt_password(wording.repeat)?);
        if first.expose_secret() != second.expose_secret() {
            bail!("{}", wording.mismatch);
        }
        return Ok(first);
    }
    let mut raw = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut raw)
        .context(wording.stdin)?;
    let raw = SecretString::from(raw);
    Ok(SecretString::from(
        raw.expose_secret()
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
    ))
}
