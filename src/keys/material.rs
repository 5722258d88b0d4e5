//! Key material: generation and signing with aws-lc-rs (constant-time, no private-key
//! operation in pure Rust) for RSA-2048 (RS256), P-256 (ES256) and Ed25519 (EdDSA), and the
//! public JWK of each with its RFC 7638 thumbprint.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RsaEncoding,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use secrecy::SecretSlice;
use sha2::{Digest, Sha256};

use super::KeyError;
use crate::domain::jws::SigningAlg;

/// A new private key for `alg` as unencrypted PKCS#8 (RFC 5208) DER, the form stored
/// (encrypted) in the database.
pub(super) fn generate_pkcs8(alg: SigningAlg) -> Result<SecretSlice<u8>, KeyError> {
    let failed = |what: &str| KeyError::Crypto(format!("{alg} key {what} failed"));
    let der = match alg {
        SigningAlg::RS256 => return generate_rsa_pkcs8(),
        SigningAlg::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| failed("generation"))?
            .to_pkcs8v1()
            .map_err(|_| failed("export"))?,
        SigningAlg::EdDSA => Ed25519KeyPair::generate()
            .map_err(|_| failed("generation"))?
            .to_pkcs8()
            .map_err(|_| failed("export"))?,
    };
    Ok(SecretSlice::from(der.as_ref().to_vec()))
}

/// A parsed private key of one of the supported algorithms, kept parsed: jsonwebtoken's
/// `EncodingKey` would re-parse the DER on every signature.
pub(super) enum PrivateKey {
    Rsa(RsaKey),
    Ec(EcKey),
    Ed(EdKey),
}

impl PrivateKey {
    /// Parses `pkcs8` as a key for `alg`; a key of another type (or another curve) is
    /// refused.
    pub(super) fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8]) -> Result<Self, KeyError> {
        Ok(match alg {
            SigningAlg::RS256 => Self::Rsa(RsaKey::from_pkcs8(pkcs8)?),
            SigningAlg::ES256 => Self::Ec(EcKey::from_pkcs8(pkcs8)?),
            SigningAlg::EdDSA => Self::Ed(EdKey::from_pkcs8(pkcs8)?),
        })
    }

    /// The JWS signature over `message` (RFC 7518 §3.3 PKCS#1 v1.5 for RS256, §3.4 the
    /// 64-byte `R || S` form for ES256, RFC 8037 §3.1 for EdDSA).
    pub(super) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self {
            Self::Rsa(key) => key.sign(&RSA_PKCS1_SHA256, message),
            Self::Ec(key) => key
                .pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto("ECDSA signing failed".to_owned())),
            Self::Ed(key) => key
                .pair
                .try_sign(message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto("Ed25519 signing failed".to_owned())),
        }
    }

    pub(super) fn decoding_key(&self) -> DecodingKey {
        match self {
            Self::Rsa(key) => key.decoding_key(),
            // The uncompressed point `04 || x || y`, what aws-lc verifies against.
            Self::Ec(key) => DecodingKey::from_ec_der(key.pair.public_key().as_ref()),
            Self::Ed(key) => DecodingKey::from_ed_der(&key.x),
        }
    }

    /// The JWK members RFC 7638 §3.2 hashes, in lexicographic order.
    fn required_members(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Rsa(key) => vec![
                ("e", key.e_b64()),
                ("kty", "RSA".to_owned()),
                ("n", key.n_b64()),
            ],
            // RFC 7638 §3.2: crv, kty, x, y for EC.
            Self::Ec(key) => vec![
                ("crv", "P-256".to_owned()),
                ("kty", "EC".to_owned()),
                ("x", URL_SAFE_NO_PAD.encode(&key.x)),
                ("y", URL_SAFE_NO_PAD.encode(&key.y)),
            ],
            // RFC 8037 §2: crv, kty, x for OKP.
            Self::Ed(key) => vec![
                ("crv", "Ed25519".to_owned()),
                ("kty", "OKP".to_owned()),
                ("x", URL_SAFE_NO_PAD.encode(&key.x)),
            ],
        }
    }

    /// RFC 7638 JWK thumbprint (SHA-256, base64url): a kid that names the key itself.
    pub(super) fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical_json(&self.required_members())))
    }

    /// The public JWK as published in the JWKS: no private parameters, ever.
    pub(super) fn public_jwk(&self, kid: &str, alg: SigningAlg) -> serde_json::Value {
        let mut jwk = serde_json::Map::new();
        for (name, value) in self.required_members() {
            jwk.insert(name.to_owned(), value.into());
        }
        jwk.insert("use".to_owned(), "sig".into());
        jwk.insert("alg".to_owned(), alg.as_str().into());
        jwk.insert("kid".to_owned(), kid.into());
        serde_json::Value::Object(jwk)
    }

    /// Whether a stored JWK describes this key's public half.
    pub(super) fn matches_jwk(&self, jwk: &serde_json::Value) -> bool {
        self.required_members()
            .iter()
            .all(|(name, value)| jwk.get(*name).and_then(serde_json::Value::as_str) == Some(value))
    }
}

/// `{"a":"…","b":"…"}` with no whitespace (RFC 7638 §3.3); the values are base64url or
/// fixed names, which need no escaping, but escape anyway through serde_json.
fn canonical_json(members: &[(&str, String)]) -> Vec<u8> {
    let mut out = b"{".to_vec();
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend(serde_json::to_vec(name).unwrap_or_default());
        out.push(b':');
        out.extend(serde_json::to_vec(value).unwrap_or_default());
    }
    out.push(b'}');
    out
}

/// A P-256 key pair with its public coordinates (RFC 7518 §6.2.1: 32 bytes each).
pub(super) struct EcKey {
    pair: EcdsaKeyPair,
    x: Vec<u8>,
    y: Vec<u8>,
}

impl EcKey {
    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|e| KeyError::Crypto(format!("stored P-256 key rejected: {e}")))?;
        let point = pair.public_key().as_ref();
        // SEC 1 §2.3.3 uncompressed form: 0x04 || x || y.
        if point.len() != 65 || point[0] != 0x04 {
            return Err(KeyError::Crypto(
                "unexpected P-256 public key encoding".to_owned(),
            ));
        }
        let (x, y) = point[1..].split_at(32);
        Ok(Self {
            x: x.to_vec(),
            y: y.to_vec(),
            pair,
        })
    }
}

/// An Ed25519 key pair with its 32-byte public key (RFC 8037 §2 `x`).
pub(super) struct EdKey {
    pair: Ed25519KeyPair,
    x: Vec<u8>,
}

impl EdKey {
    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| KeyError::Crypto(format!("stored Ed25519 key rejected: {e}")))?;
        let x = pair.public_key().as_ref().to_vec();
        Ok(Self { pair, x })
    }
}

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
        let key = PrivateKey::Rsa(RsaKey {
            pair: KeyPair::from_pkcs8(pkcs8.expose_secret()).unwrap_or_else(|e| panic!("{e}")),
            n: URL_SAFE_NO_PAD.decode(n).unwrap_or_else(|e| panic!("{e}")),
            e: vec![1, 0, 1],
        });
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

    fn b64(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap_or_else(|e| panic!("{e}"))
    }

    /// RFC 8037 Appendix A.1 (the key), A.3 (its thumbprint) and A.4 (a signature:
    /// Ed25519 is deterministic, so ours must be byte for byte the same).
    #[test]
    fn ed25519_matches_the_rfc_8037_examples() {
        let d = b64("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
        let x = b64("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        let pair =
            Ed25519KeyPair::from_seed_and_public_key(&d, &x).unwrap_or_else(|e| panic!("{e}"));
        let pkcs8 = pair.to_pkcs8().unwrap_or_else(|e| panic!("{e}"));
        let key = PrivateKey::from_pkcs8(SigningAlg::EdDSA, pkcs8.as_ref())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let signature = key
            .sign(b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            URL_SAFE_NO_PAD.encode(signature),
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        assert_eq!(
            key.public_jwk("k1", SigningAlg::EdDSA),
            serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                "use": "sig", "alg": "EdDSA", "kid": "k1",
            })
        );
    }

    /// RFC 7515 Appendix A.3: the P-256 key, and its example ES256 signature verifies
    /// with our decoding key through jsonwebtoken.
    #[test]
    fn p256_matches_the_rfc_7515_example() {
        let x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        let d = b64("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
        let mut point = vec![4];
        point.extend(b64(x));
        point.extend(b64(y));
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &d,
            &point,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let pkcs8 = pair.to_pkcs8v1().unwrap_or_else(|e| panic!("{e}"));
        let key = PrivateKey::from_pkcs8(SigningAlg::ES256, pkcs8.as_ref())
            .unwrap_or_else(|e| panic!("{e}"));
        // RFC 7638 §3.2: the required EC members are crv, kty, x, y.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        assert_eq!(
            key.thumbprint(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
        );
        assert_eq!(
            key.public_jwk("k2", SigningAlg::ES256),
            serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": x, "y": y,
                "use": "sig", "alg": "ES256", "kid": "k2",
            })
        );
        let jws = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
        let (input, signature) = jws.rsplit_once('.').unwrap_or_else(|| panic!("jws"));
        assert!(
            jsonwebtoken::crypto::verify(
                signature,
                input.as_bytes(),
                &key.decoding_key(),
                jsonwebtoken::Algorithm::ES256
            )
            .unwrap_or_else(|e| panic!("{e}"))
        );
        // Our own signatures are 64-byte R || S and verify the same way.
        let ours = key.sign(input.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ours.len(), 64);
        assert!(
            jsonwebtoken::crypto::verify(
                &URL_SAFE_NO_PAD.encode(&ours),
                input.as_bytes(),
                &key.decoding_key(),
                jsonwebtoken::Algorithm::ES256
            )
            .unwrap_or_else(|e| panic!("{e}"))
        );
    }

    #[test]
    fn every_algorithm_generates_keys_of_its_own_type_only() {
        for alg in SigningAlg::ALL {
            let pkcs8 = generate_pkcs8(alg).unwrap_or_else(|e| panic!("{e}"));
            let key = PrivateKey::from_pkcs8(alg, pkcs8.expose_secret())
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            let jwk = key.public_jwk(&key.thumbprint(), alg);
            assert!(key.matches_jwk(&jwk));
            assert!(jwk.get("d").is_none() && jwk.get("p").is_none());
            for other in SigningAlg::ALL.into_iter().filter(|o| *o != alg) {
                assert!(
                    PrivateKey::from_pkcs8(other, pkcs8.expose_secret()).is_err(),
                    "a {alg} key was accepted as {other}"
                );
            }
        }
        // A P-384 key is not a P-256 key.
        let p384 = EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(PrivateKey::from_pkcs8(SigningAlg::ES256, p384.as_ref()).is_err());
    }
}
