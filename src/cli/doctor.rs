//! `doctor`: print the checks of `crate::doctor`; exit 1 if one failed.

use anyhow::bail;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::doctor::Status;

pub(super) async fn run(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let production = std::env::var("PORTCULLIS_ENV").as_deref() == Ok("production");
    let checks = crate::doctor::run(settings, production, SystemClock.now()).await;
    super::list(json, &checks, |c| {
        format!("{:<4}  {:<18}  {}", c.status.as_str(), c.check, c.message)
    })?;
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}
