//! The WebAuthn relying party of the passkeys (the issuer) and the problems a passkey
//! response can have: shared by the factor service and the passkey ceremonies.

use webauthn_rs::prelude::{Webauthn, WebauthnBuilder};

/// The relying party of the passkeys: the issuer.
pub fn relying_party(issuer: &str) -> Result<Webauthn, String> {
    let origin = url::Url::parse(issuer).map_err(|e| e.to_string())?;
    // §5.1.3: the RP ID is a registrable domain suffix of (or equal to) the origin's
    // effective domain; an IP address is not one (§5.1.3 "Note").
    let rp_id = match origin.host() {
        Some(url::Host::Domain(host)) => host.to_owned(),
        _ => return Err("the issuer's host is not a domain name".into()),
    };
    let origin =
        url::Url::parse(&origin.origin().ascii_serialization()).map_err(|e| e.to_string())?;
    WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| b.rp_name("Portcullis").build())
        .map_err(|e| e.to_string())
}

/// What was wrong with a passkey response: told to the page as one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyProblem {
    /// Not a WebAuthn response (bad JSON, too long, wrong shape).
    Malformed,
    /// No ceremony waits for a response (expired, already used, or never started).
    NoCeremony,
    /// The response did not verify (another challenge, origin or RP ID; a bad
    /// signature; no user verification), or names a credential that is not registered.
    Rejected,
    /// Passkeys are off: the issuer's host is not a domain name.
    Unavailable,
}

impl std::fmt::Display for PasskeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "the passkey response could not be read",
            Self::NoCeremony => "this passkey request has expired or was already used; try again",
            Self::Rejected => "your passkey was not accepted",
            Self::Unavailable => "passkeys are not available on this server",
        })
    }
}
