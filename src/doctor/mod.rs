//! `portcullis doctor`: checks a deployment against what DESIGN.md and the security
//! defaults expect, with the same configuration the server would load, and says what to
//! change. It only reads: it never migrates, creates a database file or generates a key.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{JWKS_MAX_AGE, Settings, redact_url};
use crate::domain::scope::ADMIN_SCOPE;
use crate::keys::MasterKey;
use crate::storage::{self, Backend, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// One finding: which check, how it went, and what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub message: String,
}

fn check(check: &'static str, status: Status, message: impl Into<String>) -> Check {
    Check {
        check,
        status,
        message: message.into(),
    }
}

/// How long the database checks may take in all.
const DATABASE_CHECK_LIMIT: Duration = Duration::from_secs(60);

/// DESIGN.md: access tokens of 5 to 15 minutes pass without a warning.
const ACCESS_TOKEN_RANGE: (Duration, Duration) =
    (Duration::from_secs(5 * 60), Duration::from_secs(15 * 60));

/// Runs every check. `production` is whether `PORTCULLIS_ENV=production`; `now` the
/// current time (key ages).
pub async fn run(settings: &Settings, production: bool, now: OffsetDateTime) -> Vec<Check> {
    let mut out = vec![environment(production), issuer(settings)];
    out.push(proxies(settings));
    out.push(token_lifetimes(settings));
    out.push(password_hashing(settings));
    out.push(audit_retention(settings, production));
    let master = master_key(settings, production);
    let key = match master {
        Ok((found, key)) => {
            out.push(found);
            Some(key)
        }
        Err(failed) => {
            out.push(failed);
            None
        }
    };
    // A database that accepts connections but stalls must not hang the check.
    match tokio::time::timeout(
        DATABASE_CHECK_LIMIT,
        database(settings, production, key.as_ref(), now),
    )
    .await
    {
        Ok(checks) => out.extend(checks),
        Err(_) => out.push(check(
            "database",
            Status::Fail,
            format!(
                "{} did not answer within {}s",
                redact_url(&settings.database.url),
                DATABASE_CHECK_LIMIT.as_secs()
            ),
        )),
    }
    out
}

fn environment(production: bool) -> Check {
    if production {
        check("environment", Status::Ok, "PORTCULLIS_ENV=production")
    } else {
        check(
            "environment",
            Status::Warn,
            "development mode (PORTCULLIS_ENV is not `production`): a master key may be \
             generated next to the data; set PORTCULLIS_ENV=production for a deployment",
        )
    }
}

fn issuer(settings: &Settings) -> Check {
    if settings.is_https() {
        check("issuer", Status::Ok, format!("{} (https)", settings.issuer))
    } else {
        // The settings validation already refuses http anywhere but on loopback.
        check(
            "issuer",
            Status::Warn,
            format!(
                "{} is plain http on loopback: fine on a developer's machine only; \
                 deploy with an https issuer (RFC 9700 §2.6, OpenID Connect Core §3.1.2.1)",
                settings.issuer
            ),
        )
    }
}

fn proxies(settings: &Settings) -> Check {
    let loopback_bind = settings
        .server
        .bind
        .rsplit_once(':')
        .map(|(host, _)| host.trim_matches(['[', ']']))
        .and_then(|host| {
            if host == "localhost" {
                Some(true)
            } else {
                host.parse::<IpAddr>().ok().map(|ip| ip.is_loopback())
            }
        })
        .unwrap_or(false);
    let proxies = &settings.server.trusted_proxies;
    if settings.is_https() && loopback_bind && proxies.is_empty() {
        return check(
            "proxies",
            Status::Warn,
            format!(
                "the issuer is https but the server listens on {} with no \
                 server.trusted_proxies: behind a TLS-terminating proxy every client shares \
                 the proxy's address, so per-address sign-in limits and audit IPs are wrong; \
                 list the proxy's address in server.trusted_proxies",
                settings.server.bind
            ),
        );
    }
    if proxies.is_empty() {
        check(
            "proxies",
            Status::Ok,
            "no trusted proxies: X-Forwarded-For is ignored",
        )
    } else {
        let list: Vec<String> = proxies.iter().map(ToString::to_string).collect();
        check(
            "proxies",
            Status::Ok,
            format!(
                "X-Forwarded-For is believed only from {} (the issuer never comes from a header)",
                list.join(", ")
            ),
        )
    }
}

fn token_lifetimes(settings: &Settings) -> Check {
    let t = &settings.tokens;
    let (low, high) = ACCESS_TOKEN_RANGE;
    let access = t.access_token_lifetime;
    if access < low || access > high {
        return check(
            "token_lifetimes",
            Status::Warn,
            format!(
                "tokens.access_token_lifetime is {}: keep it between 5 and 15 minutes; \
                 revocation reaches resource servers that validate JWTs locally only when \
                 the token expires",
                humantime::format_duration(access)
            ),
        );
    }
    check(
        "token_lifetimes",
        Status::Ok,
        format!(
            "access tokens {}, refresh tokens {} idle / {} absolute ({} / {} for SPAs)",
            humantime::format_duration(access),
            humantime::format_duration(t.refresh_token_idle_lifetime),
            humantime::format_duration(t.refresh_token_absolute_lifetime),
            humantime::format_duration(t.spa_refresh_token_idle_lifetime),
            humantime::format_duration(t.spa_refresh_token_absolute_lifetime),
        ),
    )
}

fn password_hashing(settings: &Settings) -> Check {
    let p = &settings.password;
    // OWASP Password Storage Cheat Sheet, argon2id: m=47104 t=1, m=19456 t=2, m=12288 t=3,
    // m=9216 t=4, m=7168 t=5 (p=1) are equivalent minimums.
    let cost = u64::from(p.memory_kib) * u64::from(p.iterations);
    if p.memory_kib < 7168 || cost < 7168 * 5 {
        check(
            "password_hashing",
            Status::Warn,
            format!(
                "argon2id m={} KiB t={} is below the OWASP minimum (m=19456 KiB t=2, or an \
                 equivalent): raise password.memory_kib or password.iterations; stored hashes \
                 are upgraded at each user's next sign-in",
                p.memory_kib, p.iterations
            ),
        )
    } else {
        check(
            "password_hashing",
            Status::Ok,
            format!(
                "argon2id m={} KiB t={} p={}",
                p.memory_kib, p.iterations, p.parallelism
            ),
        )
    }
}

fn audit_retention(settings: &Settings, production: bool) -> Check {
    let keep = settings.housekeeping.audit_retention;
    if keep.is_zero() {
        check(
            "audit_retention",
            if production { Status::Warn } else { Status::Ok },
            "audit events are kept for ever: set housekeeping.audit_retention to your \
             retention policy (e.g. 400d) so the table does not grow without bound",
        )
    } else {
        check(
            "audit_retention",
            Status::Ok,
            format!(
                "audit events are deleted after {}",
                humantime::format_duration(keep)
            ),
        )
    }
}

/// Where the master key comes from and whether it is stored safely.
fn master_key(settings: &Settings, production: bool) -> Result<(Check, MasterKey), Check> {
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

async fn database(
    settings: &Settings,
    production: bool,
    master: Option<&MasterKey>,
    now: OffsetDateTime,
) -> Vec<Check> {
    let db = &settings.database;
    let shown = redact_url(&db.url);
    // The file as SQLite will open it (sqlx decodes the URL), not as we might parse it.
    if let Some(file) = sqlite_file(&db.url)
        && !file.exists()
    {
        return vec![check(
            "database",
            Status::Warn,
            format!(
                "{} does not exist yet: it is created at the first start",
                file.display()
            ),
        )];
    }
    // Read-only: doctor never creates, migrates, re-journals or re-permissions anything.
    let store = match storage::connect_read_only(db).await {
        Ok(store) => store,
        Err(e) => {
            return vec![check(
                "database",
                Status::Fail,
                format!("cannot open {shown}: {e}"),
            )];
        }
    };
    let mut out = Vec::new();
    if let Err(e) = store.ping().await {
        out.push(check(
            "database",
            Status::Fail,
            format!("{shown} does not answer: {e}"),
        ));
        store.close().await;
        return out;
    }
    out.push(match store.backend() {
        Backend::Sqlite => check(
            "database",
            if production { Status::Warn } else { Status::Ok },
            format!(
                "{shown}: embedded SQLite serves a single instance; use Postgres to run several"
            ),
        ),
        Backend::Postgres => postgres_tls(&db.url, &shown),
    });
    let pending = match store.pending_migrations().await {
        Ok(p) => p,
        Err(e) => {
            out.push(check("migrations", Status::Fail, format!("{e}")));
            store.close().await;
            return out;
        }
    };
    if pending.is_empty() {
        out.push(check("migrations", Status::Ok, "the schema is up to date"));
        out.extend(signing_keys(settings, store.as_ref(), master, now).await);
        out.push(admin_clients(store.as_ref()).await);
        out.push(table_sizes(store.as_ref(), now).await);
    } else {
        let list: Vec<String> = pending.iter().map(ToString::to_string).collect();
        let (status, hint) = if db.migrate_on_start {
            (Status::Ok, "the server applies them when it starts")
        } else {
            (
                Status::Fail,
                "database.migrate_on_start is false: run `portcullis migrate`",
            )
        };
        out.push(check(
            "migrations",
            status,
            format!("{} pending ({}): {hint}", pending.len(), list.join(", ")),
        ));
    }
    store.close().await;
    out
}

/// Rows per table and what the last day added: how fast storage grows, and whether
/// housekeeping keeps up (expired rows are purged every `housekeeping.interval`).
async fn table_sizes(store: &dyn crate::storage::Store, now: OffsetDateTime) -> Check {
    match store.table_sizes(now - time::Duration::days(1)).await {
        Ok(sizes) => {
            let parts: Vec<String> = sizes
                .iter()
                .map(|t| match t.recent {
                    Some(recent) => format!("{} {} ({recent} in the last day)", t.table, t.rows),
                    None => format!("{} {}", t.table, t.rows),
                })
                .collect();
            check("storage", Status::Ok, format!("rows: {}", parts.join("; ")))
        }
        Err(e) => check(
            "storage",
            Status::Warn,
            format!("could not count rows: {e}"),
        ),
    }
}

/// The file of a SQLite URL, as sqlx resolves it; none for other URLs and in-memory ones.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr as _;
    if !url.starts_with("sqlite:") || url.contains(":memory:") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let file = options.get_filename();
    (!file.as_os_str().is_empty()).then(|| file.to_path_buf())
}

/// A Postgres URL that leaves the machine should insist on TLS. Host and SSL mode as
/// sqlx resolves them: the URL's `host=`/`sslmode=` parameters and PGHOST/PGSSLMODE too.
fn postgres_tls(url: &str, shown: &str) -> Check {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    use std::str::FromStr as _;
    let Ok(options) = PgConnectOptions::from_str(url) else {
        return check(
            "database",
            Status::Fail,
            format!("{shown} is not a valid Postgres URL"),
        );
    };
    let host = options.get_host().trim_matches(['[', ']']);
    let local = options.get_socket().is_some()
        || host.is_empty()
        || host == "localhost"
        || host.starts_with('/')
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let mode = options.get_ssl_mode();
    let sslmode = match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    };
    let strict = matches!(mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull);
    if local || strict {
        check("database", Status::Ok, format!("{shown} (Postgres)"))
    } else {
        check(
            "database",
            Status::Warn,
            format!(
                "{shown}: Postgres on another host with sslmode={sslmode}: password hashes and \
                 tokens cross the network without a verified TLS connection; use \
                 sslmode=verify-full"
            ),
        )
    }
}

async fn signing_keys(
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
        let of = |state: &str| {
            keys.iter()
                .filter(|k| k.alg == alg.as_str() && k.state == state)
                .collect::<Vec<_>>()
        };
        let (current, next) = (of("current"), of("next"));
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
        .filter(|k| k.state != "retired")
        .filter(|k| !settings.keys.algorithms.iter().any(|a| a.as_str() == k.alg))
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

async fn admin_clients(store: &dyn Store) -> Check {
    match store.list_clients(10_000).await {
        Ok(clients) => {
            let admins: Vec<String> = clients
                .iter()
                .filter(|c| c.scopes.contains(ADMIN_SCOPE))
                .map(|c| c.id.to_string())
                .collect();
            if admins.is_empty() {
                check(
                    "admin_clients",
                    Status::Ok,
                    "no admin API client (create one with `portcullis clients create --admin`)",
                )
            } else {
                check(
                    "admin_clients",
                    Status::Ok,
                    format!(
                        "{} client(s) may use the admin API: {}; keep their secrets in a \
                         secret store and rotate them when people leave",
                        admins.len(),
                        admins.join(", ")
                    ),
                )
            }
        }
        Err(e) => check("admin_clients", Status::Fail, format!("{e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file_as_sqlx_resolves_it() {
        let file = |url: &str| sqlite_file(url).map(|p| p.display().to_string());
        assert_eq!(
            file("sqlite://data/portcullis.db").as_deref(),
            Some("data/portcullis.db")
        );
        assert_eq!(
            file("sqlite:///var/lib/p.db?mode=rwc").as_deref(),
            Some("/var/lib/p.db")
        );
        assert_eq!(
            file("sqlite://data/a%20b.db").as_deref(),
            Some("data/a b.db")
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("postgres://h/db"), None);
    }

    #[test]
    fn remote_postgres_without_verified_tls_is_a_warning() {
        let ok = |url: &str| postgres_tls(url, url).status;
        assert_eq!(ok("postgres://postgres@127.0.0.1:5432/p"), Status::Ok);
        assert_eq!(ok("postgres://u@localhost/p"), Status::Ok);
        assert_eq!(
            ok("postgres://u@db.internal/p?sslmode=verify-full"),
            Status::Ok
        );
        assert_eq!(ok("postgres://u@db.internal/p"), Status::Warn);
        assert_eq!(
            ok("postgres://u@db.internal/p?sslmode=require"),
            Status::Warn
        );
        // The host sqlx connects to, wherever it is given.
        assert_eq!(ok("postgres:///p?host=db.remote"), Status::Warn);
        assert_eq!(ok("postgres:///p?host=/var/run/postgresql"), Status::Ok);
    }

    #[test]
    fn weak_argon2_parameters_are_a_warning() {
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(password_hashing(&s).status, Status::Ok);
        s.password.memory_kib = 9216;
        s.password.iterations = 4;
        assert_eq!(
            password_hashing(&s).status,
            Status::Ok,
            "an OWASP equivalent"
        );
        s.password.iterations = 2;
        assert_eq!(password_hashing(&s).status, Status::Warn);
        s.password.memory_kib = 4096;
        s.password.iterations = 20;
        assert_eq!(password_hashing(&s).status, Status::Warn, "memory too low");
    }

    #[test]
    fn access_tokens_outside_five_to_fifteen_minutes_are_a_warning() {
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(token_lifetimes(&s).status, Status::Ok);
        s.tokens.access_token_lifetime = Duration::from_secs(3600);
        assert_eq!(token_lifetimes(&s).status, Status::Warn);
        s.tokens.access_token_lifetime = Duration::from_secs(60);
        assert_eq!(token_lifetimes(&s).status, Status::Warn);
    }

    #[test]
    fn an_https_issuer_on_loopback_without_trusted_proxies_is_a_warning() {
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(proxies(&s).status, Status::Ok, "http development default");
        s.issuer = "https://id.example.com".into();
        assert_eq!(proxies(&s).status, Status::Warn);
        s.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))];
        assert_eq!(proxies(&s).status, Status::Ok);
        s.server.trusted_proxies.clear();
        s.server.bind = "0.0.0.0:8443".into();
        assert_eq!(
            proxies(&s).status,
            Status::Ok,
            "terminates TLS itself or is exposed"
        );
    }
}
