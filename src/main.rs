//! The `portcullis` binary: parse the command line, load config, start tracing, dispatch.

use clap::Parser;
use portcullis::cli::{Cli, Command, run};
use portcullis::config::{LogFormat, LogSettings, Settings, Sources};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; commands other than `serve` log only warnings so their stdout
    // stays clean for scripts.
    let log = match Settings::load(&Sources::from_env(cli.config.clone())) {
        Ok(s) if matches!(cli.command, Command::Serve { .. }) => s.log,
        Ok(s) => LogSettings {
            level: "warn".into(),
            ..s.log
        },
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let log = LogSettings {
        format: if matches!(cli.command, Command::Serve { .. }) {
            log.format
        } else {
            LogFormat::Pretty
        },
        ..log
    };
    if let Err(e) = portcullis::telemetry::init(&log) {
        eprintln!("error: could not start logging: {e}");
        return std::process::ExitCode::from(2);
    }
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
