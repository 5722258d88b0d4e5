//! Where the master key comes from, and whether it is stored where others can read it.

use std::path::Path;

use super::{Check, Status, check};
use crate::config::Settings;
use crate::keys::MasterKey;

/// Where the master key comes from and whether it is stored safely.
pub(super) fn master_key(
    settings: &Settings,
    production: bool,
) -> Result<(Check, MasterKey), Check> {
    let from_env_set = std::env::var("PORTCULLIS_MASTER_KEY").is_ok_and(|v| !v.trim().is_empty());
    let generated_file = Path::new(&settings.keys.generated_master_key_file);
    if !production
        && !from_env_set
        && settings.keys.master_key_file.is_empty()
        && settings.keys.generate_master_key
        && !settings.keys.generated_master_key_file.is_empty()
        && !generated_file.exists()
    {
        return Err(check(
            "master_key",
            Status::Warn,
            format!(
                "none yet: development mode generates one into {} at the first start; \
                 give PORTCULLIS_MASTER_KEY or keys.master_key_file for a deployment",
                generated_file.display()
            ),
        ));
    }
    let key = MasterKey::load_existing(&settings.keys)
        .map_err(|e| check("master_key", Status::Fail, format!("{e}")))?;
    let from_env = std::env::var("PORTCULLIS_MASTER_KEY").is_ok_and(|v| !v.trim().is_empty());
    if from_env {
        return Ok((
            check("master_key", Status::Ok, "from PORTCULLIS_MASTER_KEY"),
            key,
        ));
    }
    let (path, generated) = if settings.keys.master_key_file.is_empty() {
        (settings.keys.generated_master_key_file.as_str(), true)
    } else {
        (settings.keys.master_key_file.as_str(), false)
    };
    if generated {
        let status = if production {
            Status::Fail
        } else {
            Status::Warn
        };
        return Ok((
            check(
                "master_key",
                status,
                format!(
                    "a generated development key ({path}) next to the data: whoever copies \
                     the data directory has the key too; give PORTCULLIS_MASTER_KEY or \
                     keys.master_key_file from a secret store"
                ),
            ),
            key,
        ));
    }
    if let Some(mode) = others_can_read(Path::new(path)) {
        return Ok((
            check(
                "master_key",
                Status::Warn,
                format!("{path} has mode {mode:o}: others can read it; chmod 600 {path}"),
            ),
            key,
        ));
    }
    Ok((
        check("master_key", Status::Ok, format!("from {path} (mode 600)")),
        key,
    ))
}

#[cfg(unix)]
fn others_can_read(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn others_can_read(_: &Path) -> Option<u32> {
    None
}
