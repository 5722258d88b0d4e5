//! The database checks: reachable (read-only), backend and TLS, pending migrations, then
//! what is in it (signing keys, admin clients, table sizes).

use std::net::IpAddr;

use time::OffsetDateTime;

use super::signing_keys::signing_keys;
use super::{Check, Status, check};
use crate::config::{Settings, redact_url};
use crate::domain::scope::ADMIN_SCOPE;
use crate::keys::MasterKey;
use crate::storage::{self, Backend, Store};

pub(super) async fn database(
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
}
