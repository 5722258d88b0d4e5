//! RSA key material: generation with aws-lc-rs, the DER forms jsonwebtoken needs, and the
//! public JWK with its RFC 7638 thumbprint.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

use super::KeyError;

/// DER of the rsaEncryption object identifier, 1.2.840.113549.1.1.1 (RFC 8017 appendix C).
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

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

/// A parsed RSA private key and its public half.
pub(super) struct RsaKey {
    /// RFC 8017 `RSAPrivateKey` DER: jsonwebtoken's aws-lc backend signs with
    /// `RsaKeyPair::from_der`, which takes this form and not PKCS#8.
    pkcs1: SecretSlice<u8>,
    /// Big-endian, without leading zeros (RFC 7518 §6.3.1).
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    pub(super) fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let pair = KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| KeyError::Crypto(format!("stored RSA key rejected: {e}")))?;
        let pkcs1 = pkcs1_from_pkcs8(pkcs8)
            .ok_or_else(|| KeyError::Crypto("stored RSA key is not PKCS#8".to_owned()))?;
        // The key jsonwebtoken will sign with must be the very key we publish.
        let check = KeyPair::from_der(pkcs1)
            .map_err(|e| KeyError::Crypto(format!("stored RSA key rejected: {e}")))?;
        if check.public_key().as_ref() != pair.public_key().as_ref() {
            return Err(KeyError::Crypto(
                "stored RSA key has inconsistent encodings".to_owned(),
            ));
        }
        let PublicKeyComponents { n, e } = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        Ok(Self {
            pkcs1: SecretSlice::from(pkcs1.to_vec()),
            n,
            e,
        })
    }

    pub(super) fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_rsa_der(self.pkcs1.expose_secret())
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
    pub(super) fn pkcs1_der(&self) -> &[u8] {
        self.pkcs1.expose_secret()
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

/// The `RSAPrivateKey` inside an RSA `PrivateKeyInfo` (RFC 5208 §5):
/// `SEQUENCE { INTEGER version, SEQUENCE { OID rsaEncryption, NULL }, OCTET STRING key, .. }`.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Option<&[u8]> {
    let (0x30, info, []) = tlv(pkcs8)? else {
        return None;
    };
    let (0x02, _version, rest) = tlv(info)? else {
        return None;
    };
    let (0x30, algorithm, rest) = tlv(rest)? else {
        return None;
    };
    let (0x06, oid, _params) = tlv(algorithm)? else {
        return None;
    };
    if oid != RSA_ENCRYPTION_OID {
        return None;
    }
    let (0x04, key, _attributes) = tlv(rest)? else {
        return None;
    };
    Some(key)
}

/// One DER tag-length-value with a single-byte tag: `(tag, contents, rest)`.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_converts_to_the_pkcs1_form_aws_lc_signs_with() {
        let pkcs8 = generate_rsa_pkcs8().unwrap_or_else(|e| panic!("{e}"));
        let key = RsaKey::from_pkcs8(pkcs8.expose_secret()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.n().len(), 256);
        assert_eq!(key.e(), [1, 0, 1]);
        assert_eq!(key.e_b64(), "AQAB");
        // RSAPrivateKey is a SEQUENCE starting with version 0.
        assert_eq!(key.pkcs1_der().first(), Some(&0x30));
        assert!(KeyPair::from_der(key.pkcs1_der()).is_ok());
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key = RsaKey {
            pkcs1: SecretSlice::from(Vec::new()),
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
        assert!(pkcs1_from_pkcs8(&[]).is_none());
        assert!(pkcs1_from_pkcs8(&[0x30, 0x82, 0xff]).is_none());
        assert!(RsaKey::from_pkcs8(b"garbage").is_err());
        let ed = aws_lc_rs::signature::Ed25519KeyPair::generate()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_pkcs8()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(pkcs1_from_pkcs8(ed.as_ref()).is_none());
        assert!(RsaKey::from_pkcs8(ed.as_ref()).is_err());
    }
}
