//! Structured logs with tracing. Credentials never reach a log line: secrets are wrapped
//! types with redacted `Debug`, and the request log records no headers, bodies or queries.
//! Each request runs with its id in `REQUEST_ID` (set by the request middleware).

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::{LogFormat, LogSettings};

tokio::task_local! {
    /// The id of the request being served (scoped by the request middleware).
    pub static REQUEST_ID: String;
}

/// The id of the request being served, for error pages and audit rows.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// Builds the subscriber; `RUST_LOG` overrides the configured level.
pub fn subscriber<W>(settings: &LogSettings, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = Registry::default().with(filter);
    match settings.format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            ),
        ),
        LogFormat::Pretty => {
            Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(writer)))
        }
    }
}

/// Installs the global subscriber writing to stderr. Fails if one is already set.
pub fn init(settings: &LogSettings) -> anyhow::Result<()> {
    tracing::subscriber::set_global_default(subscriber(settings, std::io::stderr))?;
    Ok(())
}
