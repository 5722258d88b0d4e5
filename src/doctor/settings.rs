//! Checks of the settings themselves: environment, issuer, proxies, token lifetimes,
//! password hashing and audit retention.

use std::net::IpAddr;
use std::time::Duration;

use super::{Check, Status, check};
use crate::config::Settings;

/// DESIGN.md: access tokens of 5 to 15 minutes pass without a warning.
const ACCESS_TOKEN_RANGE: (Duration, Duration) =
    (Duration::from_secs(5 * 60), Duration::from_secs(15 * 60));

pub(super) fn environment(production: bool) -> Check {
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

pub(super) fn issuer(settings: &Settings) -> Check {
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

pub(super) fn proxies(settings: &Settings) -> Check {
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

pub(super) fn token_lifetimes(settings: &Settings) -> Check {
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

pub(super) fn password_hashing(settings: &Settings) -> Check {
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

pub(super) fn audit_retention(settings: &Settings, production: bool) -> Check {
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

#[cfg(test)]
mod tests {
    use super::*;

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
