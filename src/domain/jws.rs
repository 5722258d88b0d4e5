//! The JWS algorithms Portcullis signs with (RFC 7518 §3.1, RFC 8037 §3.1).

use serde::{Deserialize, Serialize};

/// A signing algorithm. RS256 is always enabled: OpenID Connect Core §15.1 and Discovery
/// §3 (`id_token_signing_alg_values_supported` "MUST include RS256") require it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), RSA-2048 keys.
    RS256,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4).
    ES256,
    /// EdDSA on Ed25519 (RFC 8037 §3.1).
    EdDSA,
}

impl SigningAlg {
    /// Every supported algorithm, in the order they are listed (RS256 first).
    pub const ALL: [Self; 3] = [Self::RS256, Self::ES256, Self::EdDSA];

    /// The JWS `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Exact, case-sensitive match: JWS `alg` values are case-sensitive (RFC 7515 §4.1.1).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for alg in SigningAlg::ALL {
            assert_eq!(SigningAlg::parse(alg.as_str()), Some(alg));
            assert_eq!(
                serde_json::to_value(alg).unwrap_or_default(),
                serde_json::json!(alg.as_str())
            );
        }
        for bad in ["rs256", "EDDSA", "HS256", "none", "ES384", ""] {
            assert_eq!(SigningAlg::parse(bad), None, "{bad}");
        }
        assert!(SigningAlg::ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
