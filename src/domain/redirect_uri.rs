//! Redirect URIs (RFC 6749 §3.1.2): what may be registered (RFC 8252 §7, §8.3) and how a
//! request's URI is matched against the registration — exact string comparison (RFC 6749
//! §3.1.2.3, RFC 9700 §2.1 and §4.1.3), with the loopback port exception of RFC 8252 §7.3
//! for native clients only.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::{Host, Url};

use super::client_kind::ClientKind;

/// A redirect (or post-logout redirect) URI: the text exactly as registered or sent,
/// parsed once. Comparison is on the text; the parsed form is for building the reply.
#[derive(Debug, Clone)]
pub struct RedirectUri {
    raw: String,
    url: Url,
}

impl PartialEq for RedirectUri {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for RedirectUri {}

impl PartialEq<str> for RedirectUri {
    fn eq(&self, other: &str) -> bool {
        self.raw == other
    }
}

impl PartialEq<&str> for RedirectUri {
    fn eq(&self, other: &&str) -> bool {
        self.raw == *other
    }
}

impl PartialEq<String> for RedirectUri {
    fn eq(&self, other: &String) -> bool {
        &self.raw == other
    }
}

impl std::fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Why a URI cannot be registered as a redirect URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redirect URI `{uri}`: {why}")]
pub struct UnregistrableRedirectUri {
    pub uri: String,
    pub why: &'static str,
}

/// Why a request's `redirect_uri` cannot be used at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("the redirect_uri is not an absolute URI")]
    NotAbsolute,
    #[error("the redirect_uri must not contain a fragment")]
    Fragment,
}

impl RedirectUri {
    /// A URI from a request (the request edge): an absolute URI without a fragment
    /// (RFC 6749 §3.1.2). The text is kept as sent: matching compares it, never a
    /// normalised form.
    pub fn parse(raw: &str) -> Result<Self, RedirectUriError> {
        if raw.contains('#') {
            return Err(RedirectUriError::Fragment);
        }
        let url = Url::parse(raw).map_err(|_| RedirectUriError::NotAbsolute)?;
        Ok(Self {
            raw: raw.to_owned(),
            url,
        })
    }

    /// A URI as a client registers it for `kind`:
    /// - no fragment (RFC 6749 §3.1.2), no wildcard, no credentials;
    /// - `https`, or `http` only on a loopback host (RFC 8252 §7.3, §8.3);
    /// - native apps may also use a private-use scheme in reverse-domain form
    ///   (RFC 8252 §7.1), e.g. `com.example.app:/callback`.
    pub fn register(raw: &str, kind: ClientKind) -> Result<Self, UnregistrableRedirectUri> {
        let bad = |why| UnregistrableRedirectUri {
            uri: raw.to_owned(),
            why,
        };
        if raw.len() > 2000 {
            return Err(bad("is longer than 2000 characters"));
        }
        // Stored as given: no control characters or spaces (a NUL would also break
        // Postgres text, and it would behave differently on SQLite).
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("must not contain spaces or control characters"));
        }
        if raw.contains('*') {
            return Err(bad("wildcards are not allowed; register every URI exactly"));
        }
        let uri = Self::parse(raw).map_err(|e| match e {
            RedirectUriError::Fragment => bad("must not contain a fragment"),
            RedirectUriError::NotAbsolute => bad("is not an absolute URI"),
        })?;
        let url = &uri.url;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain credentials"));
        }
        match url.scheme() {
            "https" if url.host().is_none() => Err(bad("must have a host")),
            "https" => Ok(uri),
            "http" if is_loopback(url) => Ok(uri),
            "http" => Err(bad(
                "plain http is allowed only for loopback hosts (127.0.0.1, [::1], localhost)",
            )),
            scheme if kind == ClientKind::Native => {
                const FORBIDDEN: [&str; 9] = [
                    "javascript",
                    "data",
                    "file",
                    "vbscript",
                    "about",
                    "blob",
                    "ftp",
                    "ws",
                    "wss",
                ];
                if FORBIDDEN.contains(&scheme) {
                    return Err(bad("this scheme cannot be a redirect target"));
                }
                if !scheme.contains('.') {
                    return Err(bad(
                        "a private-use scheme must be in reverse-domain form, e.g. com.example.app (RFC 8252 §7.1)",
                    ));
                }
                Ok(uri)
            }
            _ => Err(bad("must be https (or http on loopback)")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Whether `requested` may receive what is meant for this registered URI: simple
    /// string comparison (RFC 6749 §3.1.2.3, RFC 9700 §2.1 and §4.1.3), except that for a
    /// native client a loopback IP literal matches on any port (RFC 8252 §7.3) — and only
    /// the port: the rest must be the registered text byte for byte, so no other spelling
    /// of the host (`127.1`, `2130706433`), path (`/x/../cb`), separator (`http:\\`) or
    /// port (`:080`) matches.
    pub fn matches(&self, requested: &str, kind: ClientKind) -> bool {
        if self.raw == requested {
            return true;
        }
        // SECURITY: the port freedom is for native apps, which cannot know their port in
        // advance; a web client's loopback URI is a fixed development address.
        if kind != ClientKind::Native {
            return false;
        }
        let Some((host, port, rest)) = split_loopback(requested) else {
            return false;
        };
        if !port.is_none_or(is_plain_port) {
            return false;
        }
        split_loopback(&self.raw).is_some_and(|(reg_host, _, reg_rest)| {
            reg_host == host && reg_rest == rest && is_loopback_ip_literal(reg_host)
        })
    }

    /// The CSP `form-action` source that lets a form on our pages end at this URI:
    /// `https://app.example.com` for web URIs, `com.example.app:` for private-use schemes.
    pub fn form_action_source(&self) -> String {
        let url = &self.url;
        match (url.scheme(), url.host()) {
            // CSP host-sources cannot name IPv6 literals; `http:` is the narrowest source
            // that lets the redirect to a native app's `http://[::1]:port` listener through.
            ("http", Some(Host::Ipv6(_))) => "http:".to_owned(),
            ("https" | "http", _) => url.origin().ascii_serialization(),
            (scheme, _) => format!("{scheme}:"),
        }
    }
}

impl Serialize for RedirectUri {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

/// Read back from storage (a registration, a pending request): it was validated when it
/// was written, so only the parse is repeated.
impl<'de> Deserialize<'de> for RedirectUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// `localhost` or a loopback IP address (RFC 8252 §7.3, §8.3).
pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Splits `http://HOST[:PORT]REST` as written, with no normalisation: HOST is everything
/// up to the port, path or query (brackets included for IPv6), PORT the digits after a
/// `:`. `None` for anything not starting with `http://`.
fn split_loopback(raw: &str) -> Option<(&str, Option<&str>, &str)> {
    let rest = raw.strip_prefix("http://")?;
    let host_len = if rest.starts_with('[') {
        rest.find(']')? + 1
    } else {
        rest.find([':', '/', '?']).unwrap_or(rest.len())
    };
    let (host, after) = rest.split_at(host_len);
    Some(match after.strip_prefix(':') {
        Some(p) => {
            let end = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
            (host, Some(&p[..end]), &p[end..])
        }
        None => (host, None, after),
    })
}

/// An IPv4 loopback address in dotted-decimal form or `[::1]`-style bracketed IPv6, as
/// RFC 8252 §7.3 writes them (not `localhost`, §8.3).
fn is_loopback_ip_literal(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    }
    // std accepts only four decimal octets: `127.1` or `0x7f.0.0.1` do not parse.
    host.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A port as a browser would write it: 1–65535, no leading zero.
fn is_plain_port(port: &str) -> bool {
    !port.starts_with('0') && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        use ClientKind::*;
        let ok = [
            ("https://app.example.com/cb", Confidential),
            ("http://127.0.0.1/cb", Native),
            ("http://[::1]:8080/cb", Spa),
            ("http://localhost:3000/cb", Spa),
            ("com.example.app:/oauth2redirect", Native),
            ("https://app.example.com/cb?tenant=1", Confidential),
        ];
        for (uri, kind) in ok {
            let registered = RedirectUri::register(uri, kind);
            assert_eq!(
                registered.as_ref().map(RedirectUri::as_str),
                Ok(uri),
                "{uri}"
            );
        }
        let bad = [
            ("http://app.example.com/cb", Confidential),
            ("https://app.example.com/cb#frag", Confidential),
            ("https://*.example.com/cb", Confidential),
            ("https://app.example.com/*", Confidential),
            ("com.example.app:/cb", Spa),
            ("myapp:/cb", Native),
            ("javascript:alert(1)", Native),
            ("data:text/html,x", Native),
            ("wss://app.example.com/cb", Native),
            ("https://user:pw@app.example.com/cb", Confidential),
            ("/relative", Confidential),
            ("https://app.example.com/c\u{0}b", Confidential),
            ("https://app.example.com/c b", Confidential),
        ];
        for (uri, kind) in bad {
            assert!(
                RedirectUri::register(uri, kind).is_err(),
                "{uri} should be refused"
            );
        }
    }

    #[test]
    fn the_text_is_kept_as_sent() {
        let uri = RedirectUri::parse("HTTPS://App.Example.com:443/a/../cb").unwrap_or_else(|e| {
            panic!("{e}");
        });
        assert_eq!(uri.as_str(), "HTTPS://App.Example.com:443/a/../cb");
        assert_eq!(uri.url().as_str(), "https://app.example.com/cb");
        assert_eq!(
            RedirectUri::parse("https://a.example/cb#x"),
            Err(RedirectUriError::Fragment)
        );
        assert_eq!(
            RedirectUri::parse("/cb"),
            Err(RedirectUriError::NotAbsolute)
        );
    }

    #[test]
    fn form_action_sources() {
        let source = |raw: &str| {
            RedirectUri::parse(raw)
                .map(|u| u.form_action_source())
                .unwrap_or_default()
        };
        assert_eq!(
            source("https://app.example.com/cb"),
            "https://app.example.com"
        );
        assert_eq!(source("http://127.0.0.1:4000/cb"), "http://127.0.0.1:4000");
        assert_eq!(source("http://[::1]:4000/cb"), "http:");
        assert_eq!(source("com.example.app:/cb"), "com.example.app:");
    }

    #[test]
    fn serde_round_trips_the_text() {
        let uri = RedirectUri::parse("https://app.example.com/cb?x=1").unwrap_or_else(|e| {
            panic!("{e}");
        });
        let json = serde_json::to_string(&uri).unwrap_or_default();
        assert_eq!(json, r#""https://app.example.com/cb?x=1""#);
        let back: RedirectUri = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, uri);
        assert!(serde_json::from_str::<RedirectUri>(r#""not a uri""#).is_err());
    }
}
