//! The kinds of OAuth client (RFC 6749 §2.1: confidential and public; public ones split
//! by where they run, which decides their redirect URI rules, RFC 8252).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// A server-side web application that can keep a secret.
    Confidential,
    /// A browser single-page application (public).
    Spa,
    /// A mobile or desktop application (public).
    Native,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confidential => "confidential",
            Self::Spa => "spa",
            Self::Native => "native",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confidential" => Some(Self::Confidential),
            "spa" => Some(Self::Spa),
            "native" => Some(Self::Native),
            _ => None,
        }
    }

    pub fn is_public(self) -> bool {
        !matches!(self, Self::Confidential)
    }
}
