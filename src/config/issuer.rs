//! `issuer`: the issuer identifier every token and discovery document names.

use url::Url;

use super::{ConfigError, invalid};

/// OpenID Connect Discovery §3 / RFC 8414 §2: the issuer is an https URL with no query or
/// fragment. Plain http is accepted only for loopback hosts (local development).
pub(super) fn validate_issuer(raw: &str) -> Result<String, ConfigError> {
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
    use crate::config::{ConfigError, Settings};

    fn with_issuer(issuer: &str) -> Result<Settings, ConfigError> {
        let mut s = Settings::defaults()?;
        s.issuer = issuer.into();
        s.validated()
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
}
