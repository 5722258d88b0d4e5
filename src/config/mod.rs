//! Layered settings: built-in defaults (`config/default.toml`) < `config/$PORTCULLIS_ENV.toml`
//! < `PORTCULLIS__SECTION__KEY` environment variables < `--config FILE`. One file per
//! section, each with its own validation; this one loads the layers and runs them in turn.

mod database;
mod housekeeping;
mod issuer;
mod keys;
mod log;
mod login;
mod password;
mod server;
mod session;
mod tokens;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

pub use database::{DatabaseSettings, redact_url};
pub use housekeeping::HousekeepingSettings;
pub use keys::{JWKS_MAX_AGE, KeySettings};
pub use log::{LogFormat, LogSettings};
pub use login::LoginSettings;
pub use password::PasswordSettings;
pub use server::ServerSettings;
pub use session::SessionSettings;
pub use tokens::TokenSettings;

/// The documented defaults; the same file ships in `config/` for reference.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// A configured duration as the `time` crate's, saturating (every configured duration is
/// bounded by `validated`, so it never does in practice).
fn span(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The issuer identifier. Never derived from a request.
    pub issuer: String,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub session: SessionSettings,
    pub login: LoginSettings,
    pub password: PasswordSettings,
    pub log: LogSettings,
    pub housekeeping: HousekeepingSettings,
    pub keys: KeySettings,
    pub tokens: TokenSettings,
}

/// Where the layers come from; `Default` reads the process environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `PORTCULLIS_ENV`: loads `config/<env>.toml` when set.
    pub environment: Option<String>,
    /// `--config FILE`: the last layer.
    pub file: Option<PathBuf>,
    /// The directory holding `<env>.toml`; `./config` when unset.
    pub config_dir: Option<PathBuf>,
    /// Skip `PORTCULLIS__…` variables (tests build settings without the host's env).
    pub ignore_env_vars: bool,
}

impl Sources {
    pub fn from_env(file: Option<PathBuf>) -> Self {
        Self {
            environment: std::env::var("PORTCULLIS_ENV")
                .ok()
                .filter(|v| !v.is_empty()),
            file,
            config_dir: None,
            ignore_env_vars: false,
        }
    }
}

impl Settings {
    /// Loads every layer and validates the result; any problem names the offending key.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        use config::{Config, Environment, File, FileFormat};

        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(env) = &sources.environment {
            if !env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    "PORTCULLIS_ENV",
                    "may contain only letters, digits, '-' and '_'",
                ));
            }
            let dir = sources
                .config_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("config"));
            let path = dir.join(format!("{env}.toml"));
            builder = builder.add_source(File::from(path).required(true));
        }
        if !sources.ignore_env_vars {
            builder = builder.add_source(
                Environment::with_prefix("PORTCULLIS")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("server.trusted_proxies")
                    .with_list_parse_key("keys.algorithms"),
            );
        }
        if let Some(file) = &sources.file {
            builder = builder.add_source(File::from(file.as_path()).required(true));
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        let settings = settings.validated()?;
        // DESIGN.md: only development may generate a master key; in production a missing
        // key must stop the server, never be replaced by a silently new one.
        if sources.environment.as_deref() == Some("production") && settings.keys.generate_master_key
        {
            return Err(invalid(
                "keys.generate_master_key",
                "must be false when PORTCULLIS_ENV=production (give PORTCULLIS_MASTER_KEY or keys.master_key_file)",
            ));
        }
        Ok(settings)
    }

    /// Defaults only: what tests start from.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::load(&Sources {
            ignore_env_vars: true,
            ..Sources::default()
        })
    }

    /// Checks the rules serde cannot express and normalises the issuer. Every duration
    /// has an upper bound, so no `now + lifetime` can overflow.
    pub fn validated(mut self) -> Result<Self, ConfigError> {
        self.issuer = issuer::validate_issuer(&self.issuer)?;
        self.log.validate()?;
        self.server.validate()?;
        self.database.validate()?;
        self.session.validate()?;
        self.login.validate()?;
        self.password.validate()?;
        self.housekeeping.validate()?;
        self.keys.validate()?;
        self.tokens.validate()?;
        Ok(self)
    }

    /// True when the issuer is https: cookies get the `__Host-` prefix and HSTS is sent.
    pub fn is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    /// `scheme://host[:port]` of the issuer, for Origin checks.
    pub fn issuer_origin(&self) -> String {
        Url::parse(&self.issuer)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }

    /// The SQLite file behind a `sqlite:` URL, if any.
    pub fn sqlite_path(&self) -> Option<&Path> {
        let rest = self.database.url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
    }
}

fn within(
    key: &'static str,
    value: Duration,
    min_secs: u64,
    max_secs: u64,
) -> Result<(), ConfigError> {
    if value < Duration::from_secs(min_secs) || value > Duration::from_secs(max_secs) {
        let show = |secs: u64| humantime::format_duration(Duration::from_secs(secs)).to_string();
        return Err(invalid(
            key,
            format!("must be between {} and {}", show(min_secs), show(max_secs)),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings with `<env>.toml` holding `contents` as the `PORTCULLIS_ENV=env` layer.
    fn load_environment(env: &str, contents: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join(format!("{env}.toml")), contents)
            .unwrap_or_else(|e| panic!("{e}"));
        Settings::load(&Sources {
            environment: Some(env.into()),
            config_dir: Some(dir.path().to_path_buf()),
            ignore_env_vars: true,
            file: None,
        })
    }

    /// The settings with a `--config` file holding `contents`.
    fn load_file(contents: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{e}"));
        Settings::load(&Sources {
            file: Some(path),
            ignore_env_vars: true,
            ..Sources::default()
        })
    }

    fn error_text(loaded: Result<Settings, ConfigError>) -> String {
        loaded.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.sqlite_path(), Some(Path::new("data/portcullis.db")));
        assert!(!s.is_https());
    }

    #[test]
    fn the_production_example_is_a_valid_production_layer() {
        let s = load_environment(
            "production",
            include_str!("../../config/production.example.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.is_https());
        assert!(!s.keys.generate_master_key);
        assert_eq!(s.server.trusted_proxies.len(), 2);
    }

    #[test]
    fn production_refuses_to_generate_a_master_key() {
        let err = error_text(load_environment(
            "production",
            "issuer = \"https://id.example.com\"\n",
        ));
        assert!(err.contains("keys.generate_master_key"), "{err}");
    }

    #[test]
    fn a_bad_value_in_a_file_names_the_key() {
        let err = error_text(load_file("[session]\nidle_timeout = \"forever\"\n"));
        assert!(err.contains("session.idle_timeout"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let err = error_text(load_file("[session]\nidle_timeot = \"1h\"\n"));
        assert!(err.contains("idle_timeot"), "{err}");
    }

    /// Flattens the default settings into `section.key` -> default as written in docs.
    fn documented_defaults() -> Vec<(String, String)> {
        use config::{Config, File, FileFormat, ValueKind};
        fn walk(prefix: &str, value: config::Value, out: &mut Vec<(String, String)>) {
            match value.kind {
                ValueKind::Table(map) => {
                    for (k, v) in map {
                        let key = if prefix.is_empty() {
                            k
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&key, v, out);
                    }
                }
                ValueKind::Array(items) => {
                    // As written in TOML: `[]`, `["RS256"]`.
                    let items: Vec<String> = items
                        .into_iter()
                        .map(|item| match item.kind {
                            ValueKind::String(s) => format!("\"{s}\""),
                            other => other.to_string(),
                        })
                        .collect();
                    out.push((prefix.into(), format!("[{}]", items.join(", "))))
                }
                ValueKind::String(s) if s.is_empty() => out.push((prefix.into(), "\"\"".into())),
                other => out.push((prefix.into(), other.to_string())),
            }
        }
        let cfg = Config::builder()
            .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let root = cfg.cache;
        walk("", root, &mut out);
        out.sort();
        out
    }

    #[test]
    fn the_readme_documents_every_setting() {
        let defaults = documented_defaults();
        assert!(defaults.len() > 20, "{defaults:?}");
        // The README's table and the configuration reference in docs/ both.
        for (name, doc) in [
            ("README.md", include_str!("../../README.md")),
            (
                "docs/configuration.md",
                include_str!("../../docs/configuration.md"),
            ),
        ] {
            for (key, default) in &defaults {
                let row = format!("| `{key}` | `{default}` |");
                assert!(doc.contains(&row), "{name} lacks the row {row}");
            }
            let rows = doc
                .lines()
                .filter(|l| l.starts_with("| `") && l.matches(" | `").count() >= 1)
                .filter_map(|l| l.split('`').nth(1))
                .filter(|k| k.contains('.') || *k == "issuer")
                .filter(|k| !k.contains(' ') && !k.starts_with('/'))
                .count();
            assert_eq!(
                rows,
                defaults.len(),
                "{name} documents settings that do not exist"
            );
        }
    }

    #[test]
    fn environment_file_layers_over_defaults() {
        let s = load_environment("staging", "[login]\nmax_failures = 9\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.login.max_failures, 9);
        assert_eq!(s.login.ip_max_failures, 20);
    }
}
