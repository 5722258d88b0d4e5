//! Layered settings: built-in defaults (`config/default.toml`) < `config/$PORTCULLIS_ENV.toml`
//! < `PORTCULLIS__SECTION__KEY` environment variables < `--config FILE`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::domain::jws::SigningAlg;

/// The documented defaults; the same file ships in `config/` for reference.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub master_key_file: String,
    pub generate_master_key: bool,
    pub generated_master_key_file: String,
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// The current signing key is rotated this long after it became current.
    #[serde(with = "humantime_serde")]
    pub rotation_interval: Duration,
    /// How long a next key is published before it may start signing.
    #[serde(with = "humantime_serde")]
    pub prepublication: Duration,
    /// The algorithms signing keys are kept for; RS256 is required (OpenID Connect
    /// Discovery §3), ES256 and EdDSA are optional.
    pub algorithms: Vec<SigningAlg>,
}

/// The `Cache-Control: max-age` of JWKS responses (src/http/handlers/discovery.rs): a
/// relying party may not see a new key for this long, so pre-publication must be longer.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    #[serde(with = "humantime_serde")]
    pub access_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub id_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub authorization_code_lifetime: Duration,
    /// Refresh tokens of confidential and native clients: idle / absolute lifetime.
    #[serde(with = "humantime_serde")]
    pub refresh_token_idle_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_token_absolute_lifetime: Duration,
    /// Refresh tokens of browser apps (SPA clients): idle / absolute lifetime.
    #[serde(with = "humantime_serde")]
    pub spa_refresh_token_idle_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub spa_refresh_token_absolute_lifetime: Duration,
    /// How long a just-rotated refresh token may be presented again by the same client
    /// to get back the same response (a retry, not a replay); zero turns it off.
    #[serde(with = "humantime_serde")]
    pub refresh_token_retry_window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub workers: usize,
    pub trusted_proxies: Vec<IpAddr>,
    pub max_form_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// On a stop signal, how long `/readyz` fails and every response closes its
    /// connection before the listener closes (`crate::shutdown`).
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// A second listener serving only `GET /metrics`; empty for none.
    pub metrics_bind: String,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub migrate_on_start: bool,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

/// A database URL without its password (in the userinfo or the query), for messages.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = Url::parse(raw) else {
        // Unparseable (say, a password with an unencoded `/` or `#`): mask everything
        // between the scheme and the last `@`, where a password would be, and drop any
        // query, rather than echo it.
        let Some((scheme, rest)) = raw.split_once("://") else {
            return "(an unparseable database URL)".to_owned();
        };
        let (masked, host) = match rest.rsplit_once('@') {
            Some((_, host)) => ("REDACTED@", host),
            None => ("", rest),
        };
        let host = host.split(['?', '#']).next().unwrap_or_default();
        return format!("{scheme}://{masked}{host}");
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("REDACTED"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret =
                    k.eq_ignore_ascii_case("password") || k.to_ascii_lowercase().contains("secret");
                (
                    k.into_owned(),
                    if secret {
                        "REDACTED".to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub absolute_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub touch_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSettings {
    #[serde(with = "humantime_serde")]
    pub transaction_lifetime: Duration,
    pub max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    #[serde(with = "humantime_serde")]
    pub lockout_base: Duration,
    #[serde(with = "humantime_serde")]
    pub lockout_max: Duration,
    pub ip_max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub ip_window: Duration,
    pub forms_per_ip_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_concurrent: usize,
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    pub min_length: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HousekeepingSettings {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub batch_size: u32,
    /// Audit events older than this are purged; zero keeps them for ever.
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
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
        const MINUTE: u64 = 60;
        const HOUR: u64 = 3600;
        const DAY: u64 = 24 * HOUR;
        self.issuer = validate_issuer(&self.issuer)?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                "is not a tracing filter (e.g. \"info\" or \"portcullis=debug,info\")",
            ));
        }
        if self.server.max_form_bytes < 1024 || self.server.max_form_bytes > 1024 * 1024 {
            return Err(invalid(
                "server.max_form_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        within(
            "server.shutdown_timeout",
            self.server.shutdown_timeout,
            0,
            10 * MINUTE,
        )?;
        within("server.drain_delay", self.server.drain_delay, 0, 5 * MINUTE)?;
        if !self.server.metrics_bind.is_empty() {
            let port_ok = self
                .server
                .metrics_bind
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(invalid(
                    "server.metrics_bind",
                    "must be HOST:PORT (e.g. 127.0.0.1:9464), or empty for no metrics",
                ));
            }
            if self.server.metrics_bind == self.server.bind {
                return Err(invalid(
                    "server.metrics_bind",
                    "must differ from server.bind: metrics get a listener of their own",
                ));
            }
        }
        if !(self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://")
            || self.database.url.starts_with("sqlite:"))
        {
            return Err(invalid(
                "database.url",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        if self.database.max_connections == 0 || self.database.max_connections > 1000 {
            return Err(invalid(
                "database.max_connections",
                "must be between 1 and 1000",
            ));
        }
        within(
            "database.connect_timeout",
            self.database.connect_timeout,
            1,
            MINUTE,
        )?;
        let s = &self.session;
        within("session.idle_timeout", s.idle_timeout, MINUTE, 30 * DAY)?;
        within(
            "session.absolute_lifetime",
            s.absolute_lifetime,
            MINUTE,
            90 * DAY,
        )?;
        if s.absolute_lifetime < s.idle_timeout {
            return Err(invalid(
                "session.absolute_lifetime",
                "must be at least session.idle_timeout",
            ));
        }
        if s.touch_interval * 2 > s.idle_timeout {
            return Err(invalid(
                "session.touch_interval",
                "must be at most half of session.idle_timeout",
            ));
        }
        let l = &self.login;
        within(
            "login.transaction_lifetime",
            l.transaction_lifetime,
            MINUTE,
            DAY,
        )?;
        if l.max_failures == 0 || l.max_failures > 1000 {
            return Err(invalid("login.max_failures", "must be between 1 and 1000"));
        }
        within("login.failure_window", l.failure_window, 1, 7 * DAY)?;
        within("login.lockout_base", l.lockout_base, 1, DAY)?;
        within("login.lockout_max", l.lockout_max, 1, 7 * DAY)?;
        if l.lockout_max < l.lockout_base {
            return Err(invalid(
                "login.lockout_max",
                "must be at least login.lockout_base",
            ));
        }
        if l.ip_max_failures == 0 {
            return Err(invalid("login.ip_max_failures", "must be at least 1"));
        }
        within("login.ip_window", l.ip_window, 1, DAY)?;
        if l.forms_per_ip_per_minute == 0 {
            return Err(invalid(
                "login.forms_per_ip_per_minute",
                "must be at least 1",
            ));
        }
        let p = &self.password;
        // SECURITY: OWASP's floor for argon2id is m=19 MiB, t=2, p=1 (or an equivalent trade).
        if !(8 * 1024..=4 * 1024 * 1024).contains(&p.memory_kib)
            || !(1..=100).contains(&p.iterations)
            || !(1..=64).contains(&p.parallelism)
        {
            return Err(invalid(
                "password.memory_kib",
                "argon2id needs memory_kib 8192..=4194304, iterations 1..=100, parallelism 1..=64",
            ));
        }
        within("password.queue_timeout", p.queue_timeout, 0, MINUTE)?;
        if !(8..=256).contains(&p.min_length) {
            return Err(invalid("password.min_length", "must be between 8 and 256"));
        }
        within("housekeeping.interval", self.housekeeping.interval, 1, DAY)?;
        if !self.housekeeping.audit_retention.is_zero() {
            // A tiny value is a typo that would erase the trail: at least a day.
            within(
                "housekeeping.audit_retention",
                self.housekeeping.audit_retention,
                DAY,
                3650 * DAY,
            )?;
        }
        if self.housekeeping.batch_size == 0 || self.housekeeping.batch_size > 100_000 {
            return Err(invalid(
                "housekeeping.batch_size",
                "must be between 1 and 100000",
            ));
        }
        within("keys.reload_interval", self.keys.reload_interval, 1, HOUR)?;
        within(
            "keys.rotation_interval",
            self.keys.rotation_interval,
            HOUR,
            365 * DAY,
        )?;
        within("keys.prepublication", self.keys.prepublication, 1, 90 * DAY)?;
        if self.keys.prepublication <= JWKS_MAX_AGE {
            return Err(invalid(
                "keys.prepublication",
                "must be longer than the JWKS cache lifetime (5m)",
            ));
        }
        if self.keys.rotation_interval <= self.keys.prepublication {
            return Err(invalid(
                "keys.rotation_interval",
                "must be longer than keys.prepublication",
            ));
        }
        // OpenID Connect Discovery §3: id_token_signing_alg_values_supported "MUST include
        // RS256"; Core §15.1 requires providers to support it.
        if !self.keys.algorithms.contains(&SigningAlg::RS256) {
            return Err(invalid("keys.algorithms", "must include RS256"));
        }
        let mut algorithms = self.keys.algorithms.clone();
        algorithms.sort();
        algorithms.dedup();
        if algorithms.len() != self.keys.algorithms.len() {
            return Err(invalid("keys.algorithms", "lists an algorithm twice"));
        }
        let t = &self.tokens;
        // DESIGN.md: 10 minutes by default; anything beyond an hour defeats revocation.
        within(
            "tokens.access_token_lifetime",
            t.access_token_lifetime,
            MINUTE,
            HOUR,
        )?;
        within("tokens.id_token_lifetime", t.id_token_lifetime, MINUTE, DAY)?;
        // RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes is
        // RECOMMENDED."
        within(
            "tokens.authorization_code_lifetime",
            t.authorization_code_lifetime,
            1,
            10 * MINUTE,
        )?;
        for (idle_key, idle, absolute_key, absolute) in [
            (
                "tokens.refresh_token_idle_lifetime",
                t.refresh_token_idle_lifetime,
                "tokens.refresh_token_absolute_lifetime",
                t.refresh_token_absolute_lifetime,
            ),
            (
                "tokens.spa_refresh_token_idle_lifetime",
                t.spa_refresh_token_idle_lifetime,
                "tokens.spa_refresh_token_absolute_lifetime",
                t.spa_refresh_token_absolute_lifetime,
            ),
        ] {
            within(idle_key, idle, MINUTE, 365 * DAY)?;
            within(absolute_key, absolute, MINUTE, 365 * DAY)?;
            if idle > absolute {
                return Err(invalid(idle_key, "must not exceed the absolute lifetime"));
            }
        }
        within(
            "tokens.refresh_token_retry_window",
            t.refresh_token_retry_window,
            0,
            MINUTE,
        )?;
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

/// OpenID Connect Discovery §3 / RFC 8414 §2: the issuer is an https URL with no query or
/// fragment. Plain http is accepted only for loopback hosts (local development).
fn validate_issuer(raw: &str) -> Result<String, ConfigError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| invalid("issuer", format!("not an absolute URL ({e})")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(
                "issuer",
                "must use https (plain http is allowed only for localhost/loopback)",
            ));
        }
        other => return Err(invalid("issuer", format!("unsupported scheme `{other}`"))),
    }
    if url.host().is_none() {
        return Err(invalid("issuer", "must have a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("issuer", "must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("issuer", "must not contain credentials"));
    }
    // Every route, redirect and cookie path is at the root of the host; an issuer with a
    // path would name endpoints that do not exist.
    if url.path() != "/" {
        return Err(invalid(
            "issuer",
            "must not have a path (serve Portcullis at the root of its host)",
        ));
    }
    let mut s = url.to_string();
    if s.ends_with('/') {
        s.pop();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_issuer(issuer: &str) -> Result<Settings, ConfigError> {
        let mut s = Settings::defaults()?;
        s.issuer = issuer.into();
        s.validated()
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.sqlite_path(), Some(Path::new("data/portcullis.db")));
        assert!(!s.is_https());
    }

    #[test]
    fn the_audit_trail_is_bounded_by_default() {
        let s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.housekeeping.audit_retention,
            std::time::Duration::from_secs(400 * 86_400),
            "a year and a month: what common audit policies ask, and bounded"
        );
    }

    #[test]
    fn issuer_rules() {
        let ok = [
            "https://id.example.com",
            "https://id.example.com:8443",
            "http://localhost:8080/",
        ];
        for issuer in ok {
            assert!(with_issuer(issuer).is_ok(), "{issuer} should be accepted");
        }
        let bad = [
            "http://id.example.com",
            "https://id.example.com?x=1",
            "https://id.example.com#f",
            "ftp://id.example.com",
            "not a url",
            "https://user:pw@id.example.com",
            "https://example.com/tenant",
        ];
        for issuer in bad {
            match with_issuer(issuer) {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "issuer"),
                other => panic!("{issuer}: expected an issuer error, got {other:?}"),
            }
        }
        let trimmed = with_issuer("http://localhost:8080/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(trimmed.issuer, "http://localhost:8080");
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/p?sslmode=require&password=x"),
            "postgres://app:REDACTED@db:5432/p?sslmode=require&password=REDACTED"
        );
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        s.database.url = "postgres://app:hunter2@db/p".into();
        assert!(!format!("{s:?}").contains("hunter2"));
        // A password that breaks URL parsing is masked, not echoed.
        let shown = redact_url("postgres://app:pa/ss#w?rd@db.internal:5432/p");
        assert!(
            !shown.contains("pa/ss") && !shown.contains("rd@"),
            "{shown}"
        );
        assert_eq!(shown, "postgres://REDACTED@db.internal:5432/p");
        assert_eq!(
            redact_url("not a url at all"),
            "(an unparseable database URL)"
        );
    }

    #[test]
    fn key_rotation_settings_are_consistent() {
        let check = |rotation: u64, prepublication: u64| {
            let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
            s.keys.rotation_interval = Duration::from_secs(rotation);
            s.keys.prepublication = Duration::from_secs(prepublication);
            match s.validated() {
                Ok(_) => None,
                Err(ConfigError::Invalid { key, .. }) => Some(key),
                Err(other) => panic!("{other:?}"),
            }
        };
        assert_eq!(check(30 * 86_400, 86_400), None);
        // Relying parties cache the JWKS for 5 minutes: a shorter pre-publication would
        // let tokens arrive signed by a key they have not fetched.
        assert_eq!(check(30 * 86_400, 300), Some("keys.prepublication"));
        assert_eq!(check(86_400, 86_400), Some("keys.rotation_interval"));
        assert_eq!(check(7200, 3 * 3600), Some("keys.rotation_interval"));
        // The JWKS handler's Cache-Control matches JWKS_MAX_AGE.
        let handler = include_str!("http/handlers/discovery.rs");
        assert!(handler.contains(&format!("max-age={}", JWKS_MAX_AGE.as_secs())));
    }

    #[test]
    fn durations_are_bounded() {
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        s.session.absolute_lifetime = Duration::from_secs(10_000 * 365 * 86_400);
        assert!(matches!(
            s.validated(),
            Err(ConfigError::Invalid {
                key: "session.absolute_lifetime",
                ..
            })
        ));
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        s.session.touch_interval = s.session.idle_timeout;
        assert!(matches!(
            s.validated(),
            Err(ConfigError::Invalid {
                key: "session.touch_interval",
                ..
            })
        ));
    }

    #[test]
    fn the_production_example_is_a_valid_production_layer() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("production.toml"),
            include_str!("../config/production.example.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = Settings::load(&Sources {
            environment: Some("production".into()),
            config_dir: Some(dir.path().to_path_buf()),
            ignore_env_vars: true,
            file: None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.is_https());
        assert!(!s.keys.generate_master_key);
        assert_eq!(s.server.trusted_proxies.len(), 2);
    }

    #[test]
    fn production_refuses_to_generate_a_master_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("production.toml"),
            "issuer = \"https://id.example.com\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let err = Settings::load(&Sources {
            environment: Some("production".into()),
            config_dir: Some(dir.path().to_path_buf()),
            ignore_env_vars: true,
            file: None,
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("keys.generate_master_key"), "{err}");
    }

    #[test]
    fn a_bad_value_in_a_file_names_the_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[session]\nidle_timeout = \"forever\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = Settings::load(&Sources {
            file: Some(path),
            ignore_env_vars: true,
            ..Sources::default()
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("session.idle_timeout"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[session]\nidle_timeot = \"1h\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = Settings::load(&Sources {
            file: Some(path),
            ignore_env_vars: true,
            ..Sources::default()
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
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
            ("README.md", include_str!("../README.md")),
            (
                "docs/configuration.md",
                include_str!("../docs/configuration.md"),
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
    fn an_unreadable_log_filter_is_a_configuration_error() {
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        s.log.level = "info,portcullis=loud".into();
        assert!(matches!(
            s.validated(),
            Err(ConfigError::Invalid {
                key: "log.level",
                ..
            })
        ));
    }

    #[test]
    fn environment_file_layers_over_defaults() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("staging.toml"),
            "[login]\nmax_failures = 9\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = Settings::load(&Sources {
            environment: Some("staging".into()),
            config_dir: Some(dir.path().to_path_buf()),
            ignore_env_vars: true,
            file: None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.login.max_failures, 9);
        assert_eq!(s.login.ip_max_failures, 20);
    }
}
