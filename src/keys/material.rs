//! RSA key material: generation and signing with aws-lc-rs (constant-time, no private-key
//! operation in pure Rust), and the public JWK with its RFC 7638 thumbprint.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RsaEncoding};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use secrecy::SecretSlice;
use sha2::{Digest, Sha256};

use super::KeyError;

/// A new RSA-2048 private key as unencrypted PKCS#8 (RFC 5208) DER, the form stored
/// (encrypted) in the database. aws-lc-rs generates it: pure-Rust generation takes seconds
/// in debug builds.
pub(super) fn generate_rsa_pkcs8() -> Result<SecretSlice<u8>, KeyError> {
    let pair = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| KeyError::Crypto("RSA key generation failed".to_owned()))?;
    let der = pair
        .as_der()
        .map_err(|_| KeyError::Crypto("RSA key export failed".to_owned()))?;
    Ok(SecretSlice::from(der.as_ref().to_vec()))
}

/// A parsed RSA private key, kept parsed: jsonwebtoken's `EncodingKey` would re-parse
/// the DER on every signature, which nearly triples the cost of signing.
pub(super) struct RsaKey {
    pair: KeyPair,
    /// Big-endian, without leading zeros (RFC 7518 §6.3.1).
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    pub(super) fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let pair = KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| KeyError::Crypto(format!("stored RSA key rejected: {e}")))?;
        let PublicKeyComponents { n, e } = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        Ok(Self { pair, n, e })
    }

    /// A signature over `message` (RFC 7518 §3.3 for the PKCS#1 v1.5 encodings).
    pub(super) fn sign(
        &self,
        encoding: &'static dyn RsaEncoding,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(encoding, &SystemRandom::new(), message, &mut signature)
            .map_err(|_| KeyError::Crypto("RSA signing failed".to_owned()))?;
        Ok(signature)
    }

    pub(super) fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_rsa_raw_components(&self.n, &self.e)
    }

    pub(super) fn n_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.n)
    }

    pub(super) fn e_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.e)
    }

    /// RFC 7638 JWK thumbprint (SHA-256, base64url): a kid that names the key itself.
    pub(super) fn thumbprint(&self) -> String {
        // Required members only, in lexicographic order, no whitespace (RFC 7638 §3.2).
        let canonical = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            self.e_b64(),
            self.n_b64()
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The public JWK as published in the JWKS: no private parameters, ever.
    pub(super) fn public_jwk(&self, kid: &str, alg: &str) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": alg,
            "kid": kid,
            "n": self.n_b64(),
            "e": self.e_b64(),
        })
    }

    /// Whether a stored JWK describes this key's public half.
    pub(super) fn matches_jwk(&self, jwk: &serde_json::Value) -> bool {
        jwk.get("kty").and_then(serde_json::Value::as_str) == Some("RSA")
            && jwk.get("n").and_then(serde_json::Value::as_str) == Some(self.n_b64().as_str())
            && jwk.get("e").and_then(serde_json::Value::as_str) == Some(self.e_b64().as_str())
    }

    #[cfg(test)]
    pub(super) fn pair(&self) -> &KeyPair {
        &self.pair
    }

    #[cfg(test)]
    pub(super) fn n(&self) -> &[u8] {
        &self.n
    }

    #[cfg(test)]
    pub(super) fn e(&self) -> &[u8] {
        &self.e
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{
        RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaPublicKeyComponents,
    };
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn generated_key_signs_what_its_public_half_verifies() {
        let pkcs8 = generate_rsa_pkcs8().unwrap_or_else(|e| panic!("{e}"));
        let key = RsaKey::from_pkcs8(pkcs8.expose_secret()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.n().len(), 256);
        assert_eq!(key.e(), [1, 0, 1]);
        assert_eq!(key.e_b64(), "AQAB");
        let signature = key
            .sign(&RSA_PKCS1_SHA256, b"header.payload")
            .unwrap_or_else(|e| panic!("{e}"));
        let public = RsaPublicKeyComponents {
            n: key.n(),
            e: key.e(),
        };
        assert!(
            public
                .verify(&RSA_PKCS1_2048_8192_SHA256, b"header.payload", &signature)
                .is_ok()
        );
        assert!(
            public
                .verify(&RSA_PKCS1_2048_8192_SHA256, b"header.payloaD", &signature)
                .is_err()
        );
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        let pkcs8 = generate_rsa_pkcs8().unwrap_or_else(|e| panic!("{e}"));
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key = RsaKey {
            pair: KeyPair::from_pkcs8(pkcs8.expose_secret()).unwrap_or_else(|e| panic!("{e}")),
            n: URL_SAFE_NO_PAD.decode(n).unwrap_or_else(|e| panic!("{e}")),
            e: vec![1, 0, 1],
        };
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn non_rsa_or_malformed_pkcs8_is_refused() {
        assert!(RsaKey::from_pkcs8(&[]).is_err());
        assert!(RsaKey::from_pkcs8(b"garbage").is_err());
        let ed = aws_lc_rs::signature::Ed25519KeyPair::generate()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_pkcs8()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(RsaKey::from_pkcs8(ed.as_ref()).is_err());
    }
}
