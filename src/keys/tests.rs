//! The key ring against a real SQLite store: creation, reuse, encryption at rest, the
//! JWKS, and every way a token must be refused.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
use aws_lc_rs::signature::{
    KeyPair as _, RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512, RSA_PSS_SHA256, RsaEncoding,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;
use time::Duration as Span;

use super::material::{PrivateKey, RsaKey, generate_rsa_pkcs8};
use super::ring::KeyState;
use super::*;
use crate::clock::{Clock, MockClock};
use crate::config::DatabaseSettings;
use crate::domain::jws::SigningAlg;
use crate::storage::{self, SigningKeyRecord, Store};

const ISSUER: &str = "https://id.example";

struct Fixture {
    _dir: TempDir,
    store: Arc<dyn Store>,
    clock: MockClock,
    master: String,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = storage::connect(&DatabaseSettings {
            url: format!("sqlite://{}/k.db", dir.path().display()),
            max_connections: 2,
            connect_timeout: Duration::from_secs(5),
            migrate_on_start: true,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        Self {
            _dir: dir,
            store,
            clock: MockClock::starting_now(),
            master: random_master_key(),
        }
    }

    fn master(&self) -> MasterKey {
        MasterKey::from_base64(&self.master).unwrap_or_else(|e| panic!("{e}"))
    }

    async fn ring(&self) -> KeyRing {
        KeyRing::load_or_init(
            Arc::clone(&self.store),
            self.master(),
            Arc::new(self.clock.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn records(&self) -> Vec<SigningKeyRecord> {
        self.store
            .list_signing_keys()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The private key of a stored row, decrypted as an attacker with the master key would.
    fn private_key(&self, record: &SigningKeyRecord) -> RsaKey {
        let pkcs8 = self
            .master()
            .decrypt(&record.encrypted_private_key, record.kid.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        RsaKey::from_pkcs8(&pkcs8).unwrap_or_else(|e| panic!("{e}"))
    }

    async fn current_private_key(&self) -> (String, RsaKey) {
        let records = self.records().await;
        let record = records
            .iter()
            .find(|r| r.state == "current")
            .unwrap_or_else(|| panic!("no current key"));
        (record.kid.clone(), self.private_key(record))
    }

    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    fn claims(&self) -> Claims {
        Claims {
            iss: ISSUER.to_owned(),
            sub: "user-1".to_owned(),
            aud: json!("client-1"),
            exp: self.now() + 600,
            iat: self.now(),
            nbf: None,
            scope: "openid profile".to_owned(),
        }
    }
}

fn random_master_key() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap_or_else(|e| panic!("{e}"));
    STANDARD.encode(bytes)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Value,
    exp: i64,
    iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    scope: String,
}

fn at_jwt(audience: Option<&str>) -> Expectations<'_> {
    Expectations {
        typ: "at+jwt",
        issuer: ISSUER,
        audience,
        allow_expired: false,
    }
}

fn header(alg: Algorithm, kid: Option<&str>, typ: Option<&str>) -> Header {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    h.typ = typ.map(str::to_owned);
    h
}

/// A JWS with any header, signed by `key` with the RSA algorithm the header names.
fn sign_with<T: Serialize>(key: &RsaKey, header: &Header, claims: &T) -> String {
    let encoding: &'static dyn RsaEncoding = match header.alg {
        Algorithm::RS256 => &RSA_PKCS1_SHA256,
        Algorithm::RS384 => &RSA_PKCS1_SHA384,
        Algorithm::RS512 => &RSA_PKCS1_SHA512,
        Algorithm::PS256 => &RSA_PSS_SHA256,
        other => panic!("not an RSA algorithm: {other:?}"),
    };
    let input = format!(
        "{}.{}",
        b64_json(&serde_json::to_value(header).unwrap_or_else(|e| panic!("{e}"))),
        b64_json(&serde_json::to_value(claims).unwrap_or_else(|e| panic!("{e}")))
    );
    let signature = key
        .sign(encoding, input.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_else(|e| panic!("{e}")))
}

fn decode_part(part: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"))
}

fn split(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    (
        decode_part(parts[0]),
        decode_part(parts[1]),
        parts[2].to_owned(),
    )
}

fn reason(result: Result<Claims, KeyError>) -> &'static str {
    match result {
        Err(KeyError::Invalid(reason)) => reason,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
    .into_bytes()
}

#[tokio::test]
async fn load_or_init_creates_exactly_one_current_key_and_a_next_key() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let records = f.records().await;
    assert_eq!(records.len(), 2);
    let next: Vec<_> = records.iter().filter(|r| r.state == "next").collect();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].activated_at, None);
    let record = records
        .iter()
        .find(|r| r.state == "current")
        .unwrap_or_else(|| panic!("no current key"));
    assert_eq!(record.state, "current");
    assert_eq!(record.alg, "RS256");
    assert_eq!(record.activated_at, Some(f.clock.now()));
    assert_eq!(record.created_at, f.clock.now());
    assert_eq!(record.retired_at, None);
    assert_eq!(ring.current_kid().as_deref(), Some(record.kid.as_str()));
    assert_eq!(ring.algorithms(), vec!["RS256".to_owned()]);
    assert!(format!("{ring:?}").contains(&record.kid));
}

#[tokio::test]
async fn a_second_ring_on_the_same_store_reuses_the_key() {
    let f = Fixture::new().await;
    let first = f.ring().await;
    let second = f.ring().await;
    assert_eq!(first.current_kid(), second.current_kid());
    assert_eq!(f.records().await.len(), 2);
    assert_eq!(first.jwks_json(), second.jwks_json());

    // A token from one instance verifies on the other.
    let token = first
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let claims: Claims = second
        .verify(&token, &at_jwt(Some("client-1")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims, f.claims());
}

#[tokio::test]
async fn instances_starting_together_agree_on_one_key() {
    let f = Fixture::new().await;
    let clock: Arc<dyn Clock> = Arc::new(f.clock.clone());
    let (a, b, c) = tokio::join!(
        KeyRing::load_or_init(Arc::clone(&f.store), f.master(), Arc::clone(&clock)),
        KeyRing::load_or_init(Arc::clone(&f.store), f.master(), Arc::clone(&clock)),
        KeyRing::load_or_init(Arc::clone(&f.store), f.master(), Arc::clone(&clock)),
    );
    let kids: BTreeSet<Option<String>> = [a, b, c]
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")).current_kid())
        .collect();
    assert_eq!(kids.len(), 1);
    let records = f.records().await;
    assert_eq!(records.iter().filter(|r| r.state == "current").count(), 1);
}

#[tokio::test]
async fn a_different_master_key_is_a_mismatch_not_a_new_key() {
    let f = Fixture::new().await;
    let _ring = f.ring().await;
    let result = KeyRing::load_or_init(
        Arc::clone(&f.store),
        MasterKey::generate(),
        Arc::new(f.clock.clone()),
    )
    .await;
    let err = result
        .err()
        .unwrap_or_else(|| panic!("a wrong master key was accepted"));
    assert!(matches!(err, KeyError::MasterKeyMismatch), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the master key does not match the one the signing keys were encrypted with"
    );
    assert_eq!(f.records().await.len(), 2);
}

#[tokio::test]
async fn the_private_key_is_stored_encrypted() {
    let f = Fixture::new().await;
    let _ring = f.ring().await;
    let records = f.records().await;
    let record = &records[0];
    let pkcs8 = f
        .master()
        .decrypt(&record.encrypted_private_key, record.kid.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(RsaKey::from_pkcs8(&pkcs8).is_ok());
    assert!(pkcs8.len() > 1000, "PKCS#8 DER is implausibly short");

    // No 16-byte run of the private key DER (which embeds the PKCS#1 RSAPrivateKey with
    // d, p and q) appears in the stored blob.
    let blob_windows: HashSet<&[u8]> = record.encrypted_private_key.windows(16).collect();
    assert!(
        pkcs8.windows(16).all(|w| !blob_windows.contains(w)),
        "the stored blob contains private key bytes in the clear"
    );

    // The blob is bound to its row: under another kid it does not decrypt.
    assert!(matches!(
        f.master()
            .decrypt(&record.encrypted_private_key, b"another-kid"),
        Err(KeyError::MasterKeyMismatch)
    ));

    let stored: BTreeSet<&str> = record
        .public_jwk
        .as_object()
        .unwrap_or_else(|| panic!("not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        stored,
        BTreeSet::from(["alg", "e", "kid", "kty", "n", "use"])
    );
}

#[tokio::test]
async fn sign_then_verify_round_trips_claims() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let (header, _, _) = split(&token);
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "at+jwt", "kid": ring.current_kid()})
    );
    let claims: Claims = ring
        .verify(&token, &at_jwt(Some("client-1")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims, f.claims());

    // Without an audience expectation, and as untyped JSON.
    let any: Value = ring
        .verify(&token, &at_jwt(None))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(any["scope"], "openid profile");

    // typ is compared case-insensitively, with or without "application/".
    for typ in ["AT+JWT", "application/at+jwt"] {
        let token = ring
            .sign(typ, &f.claims())
            .unwrap_or_else(|e| panic!("{e}"));
        let _: Claims = ring
            .verify(&token, &at_jwt(Some("client-1")))
            .unwrap_or_else(|e| panic!("{typ}: {e}"));
    }

    // An array audience that contains ours.
    let mut claims = f.claims();
    claims.aud = json!(["other", "client-1"]);
    let token = ring
        .sign("at+jwt", &claims)
        .unwrap_or_else(|e| panic!("{e}"));
    let back: Claims = ring
        .verify(&token, &at_jwt(Some("client-1")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, claims);

    // ID tokens: typ JWT.
    let token = ring
        .sign("JWT", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let id = Expectations {
        typ: "JWT",
        ..at_jwt(Some("client-1"))
    };
    let _: Claims = ring.verify(&token, &id).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn jwks_has_exactly_the_public_parameters() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let jwks: Value = serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    let keys = jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys array: {jwks}"));
    // The current key and the pre-published next key.
    assert_eq!(keys.len(), 2);
    let current = ring.current_kid().unwrap_or_default();
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == current.as_str())
        .unwrap_or_else(|| panic!("the current key is not published: {jwks}"));
    let members: BTreeSet<&str> = jwk
        .as_object()
        .unwrap_or_else(|| panic!("not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        members,
        BTreeSet::from(["alg", "e", "kid", "kty", "n", "use"])
    );
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(jwk.get(private).is_none(), "{private} is published");
    }
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["alg"], "RS256");
    assert_eq!(jwk["e"], "AQAB");
    let n = URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n.len(), 256, "RSA-2048 modulus without a leading zero");

    // The kid is the RFC 7638 thumbprint, and it is what tokens carry.
    let canonical = format!(
        r#"{{"e":"AQAB","kty":"RSA","n":"{}"}}"#,
        jwk["n"].as_str().unwrap_or_default()
    );
    let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    assert_eq!(jwk["kid"], thumbprint);
    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let (header, _, _) = split(&token);
    assert_eq!(header["kid"], jwk["kid"]);
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let (kid, private) = f.current_private_key().await;
    let claims = f.claims();
    let payload = b64_json(&serde_json::to_value(&claims).unwrap_or_else(|e| panic!("{e}")));

    // alg none, with an empty signature and with some bytes.
    for sig in ["", "AAAA"] {
        let h = b64_json(&json!({"alg": "none", "typ": "at+jwt", "kid": kid}));
        let token = format!("{h}.{payload}.{sig}");
        assert_eq!(
            reason(ring.verify(&token, &at_jwt(Some("client-1")))),
            "algorithm does not match the key"
        );
    }
    // "None", "NONE", and a missing alg.
    for h in [
        json!({"alg": "None", "typ": "at+jwt", "kid": kid}),
        json!({"alg": "NONE", "typ": "at+jwt", "kid": kid}),
    ] {
        let token = format!("{}.{payload}.", b64_json(&h));
        assert!(ring.verify::<Claims>(&token, &at_jwt(None)).is_err());
    }
    let token = format!(
        "{}.{payload}.",
        b64_json(&json!({"typ": "at+jwt", "kid": kid}))
    );
    assert_eq!(
        reason(ring.verify(&token, &at_jwt(None))),
        "malformed token"
    );

    // HS256 keyed with every public form of our key.
    let pair = private.pair();
    let pkcs1_public = pair.public_key().as_ref().to_vec();
    let spki: PublicKeyX509Der<'static> =
        pair.public_key().as_der().unwrap_or_else(|e| panic!("{e}"));
    let spki = spki.as_ref().to_vec();
    let jwks = ring.jwks_json();
    let n_b64 = URL_SAFE_NO_PAD.encode(private.n());
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("SPKI DER", spki.clone()),
        ("PKCS#1 DER", pkcs1_public.clone()),
        ("SPKI PEM", pem("PUBLIC KEY", &spki)),
        ("PKCS#1 PEM", pem("RSA PUBLIC KEY", &pkcs1_public)),
        ("JWK n", n_b64.into_bytes()),
        ("raw n", private.n().to_vec()),
        ("JWKS", jwks.to_vec()),
    ];
    for (name, secret) in &secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = jsonwebtoken::encode(
                &header(alg, Some(&kid), Some("at+jwt")),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                reason(ring.verify(&token, &at_jwt(Some("client-1")))),
                "algorithm does not match the key",
                "{alg:?} keyed with the {name} was not refused"
            );
        }
    }

    // Other RSA algorithms, even when really signed by our own private key.
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        let token = sign_with(&private, &header(alg, Some(&kid), Some("at+jwt")), &claims);
        assert_eq!(
            reason(ring.verify(&token, &at_jwt(Some("client-1")))),
            "algorithm does not match the key",
            "{alg:?}"
        );
    }

    // The control: the same private key with RS256 is accepted.
    let token = sign_with(
        &private,
        &header(Algorithm::RS256, Some(&kid), Some("at+jwt")),
        &claims,
    );
    let _: Claims = ring
        .verify(&token, &at_jwt(Some("client-1")))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn bad_signatures_and_keys_are_refused() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let (kid, private) = f.current_private_key().await;
    let expect = at_jwt(Some("client-1"));
    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));

    // A tampered payload keeps the original signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = f.claims();
    forged.sub = "admin".to_owned();
    let forged_payload = b64_json(&serde_json::to_value(&forged).unwrap_or_else(|e| panic!("{e}")));
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(reason(ring.verify(&tampered, &expect)), "bad signature");

    // A flipped signature bit; a truncated signature; a signature from another token.
    let mut sig = URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap_or_else(|e| panic!("{e}"));
    sig[10] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(reason(ring.verify(&flipped, &expect)), "bad signature");
    let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..100]);
    assert_eq!(reason(ring.verify(&truncated, &expect)), "bad signature");

    // Our kid, but signed by another RSA key.
    let other_pkcs8 = generate_rsa_pkcs8().unwrap_or_else(|e| panic!("{e}"));
    let other = RsaKey::from_pkcs8(other_pkcs8.expose_secret()).unwrap_or_else(|e| panic!("{e}"));
    let impostor = sign_with(
        &other,
        &header(Algorithm::RS256, Some(&kid), Some("at+jwt")),
        &f.claims(),
    );
    assert_eq!(reason(ring.verify(&impostor, &expect)), "bad signature");

    // An unknown kid, and none at all.
    let unknown = sign_with(
        &other,
        &header(Algorithm::RS256, Some("nope"), Some("at+jwt")),
        &f.claims(),
    );
    assert_eq!(reason(ring.verify(&unknown, &expect)), "unknown key");
    let own_kid = PrivateKey::from_pkcs8(
        crate::domain::jws::SigningAlg::RS256,
        other_pkcs8.expose_secret(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .thumbprint();
    let unknown = sign_with(
        &other,
        &header(Algorithm::RS256, Some(&own_kid), Some("at+jwt")),
        &f.claims(),
    );
    assert_eq!(reason(ring.verify(&unknown, &expect)), "unknown key");
    let no_kid = sign_with(
        &private,
        &header(Algorithm::RS256, None, Some("at+jwt")),
        &f.claims(),
    );
    assert_eq!(reason(ring.verify(&no_kid, &expect)), "missing kid");

    // A critical header extension we do not understand.
    let mut crit = header(Algorithm::RS256, Some(&kid), Some("at+jwt"));
    crit.crit = Some(vec!["exp".to_owned()]);
    let crit = sign_with(&private, &crit, &f.claims());
    assert_eq!(
        reason(ring.verify(&crit, &expect)),
        "unsupported critical header"
    );

    // Malformed and oversized input.
    for junk in [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "..",
        "....",
        &format!("{token}.x"),
    ] {
        assert_eq!(
            reason(ring.verify(junk, &expect)),
            "malformed token",
            "{junk:?}"
        );
    }
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(20_000), parts[2]);
    assert_eq!(reason(ring.verify(&huge, &expect)), "token too large");
}

#[tokio::test]
async fn wrong_type_issuer_or_audience_is_refused() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let (kid, private) = f.current_private_key().await;
    let expect = at_jwt(Some("client-1"));

    let id_token = ring
        .sign("JWT", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&id_token, &expect)), "wrong token type");
    let untyped = sign_with(
        &private,
        &header(Algorithm::RS256, Some(&kid), None),
        &f.claims(),
    );
    assert_eq!(reason(ring.verify(&untyped, &expect)), "wrong token type");

    let mut claims = f.claims();
    claims.iss = "https://evil.example".to_owned();
    let token = ring
        .sign("at+jwt", &claims)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&token, &expect)), "wrong issuer");

    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reason(ring.verify(&token, &at_jwt(Some("client-2")))),
        "wrong audience"
    );
    let mut claims = f.claims();
    claims.aud = json!(["client-2", "client-3"]);
    let token = ring
        .sign("at+jwt", &claims)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&token, &expect)), "wrong audience");
}

#[tokio::test]
async fn time_claims_follow_the_injected_clock() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let expect = at_jwt(Some("client-1"));
    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));

    f.clock.advance(Span::seconds(599));
    let _: Claims = ring
        .verify(&token, &expect)
        .unwrap_or_else(|e| panic!("{e}"));
    f.clock.advance(Span::seconds(1));
    assert_eq!(reason(ring.verify(&token, &expect)), "expired");

    // allow_expired accepts it, but still checks everything else.
    let lenient = Expectations {
        allow_expired: true,
        ..expect
    };
    let claims: Claims = ring
        .verify(&token, &lenient)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims.sub, "user-1");
    let wrong_aud = Expectations {
        audience: Some("client-2"),
        ..lenient
    };
    assert_eq!(reason(ring.verify(&token, &wrong_aud)), "wrong audience");
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = f.claims();
    forged.sub = "admin".to_owned();
    let forged_payload = b64_json(&serde_json::to_value(&forged).unwrap_or_else(|e| panic!("{e}")));
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(reason(ring.verify(&tampered, &lenient)), "bad signature");

    // Not before: in the future, then reached.
    let mut claims = f.claims();
    claims.nbf = Some(f.now() + 120);
    let token = ring
        .sign("at+jwt", &claims)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&token, &expect)), "not yet valid");
    f.clock.advance(Span::seconds(120));
    let _: Claims = ring
        .verify(&token, &expect)
        .unwrap_or_else(|e| panic!("{e}"));

    // Issued more than a minute in the future.
    let mut claims = f.claims();
    claims.iat = f.now() + 61;
    let token = ring
        .sign("at+jwt", &claims)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&token, &expect)), "issued in the future");

    // No exp at all.
    let no_exp = json!({"iss": ISSUER, "aud": "client-1", "sub": "user-1"});
    let token = ring
        .sign("at+jwt", &no_exp)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&token, &expect)), "missing exp");
    let lenient = Expectations {
        allow_expired: true,
        ..expect
    };
    assert_eq!(reason(ring.verify(&token, &lenient)), "missing exp");
}

#[tokio::test]
async fn next_and_retired_keys_are_published_and_verify_but_do_not_sign() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let current = ring
        .current_kid()
        .unwrap_or_else(|| panic!("no current key"));
    let first_next = f
        .records()
        .await
        .into_iter()
        .find(|r| r.state == "next")
        .unwrap_or_else(|| panic!("no next key"))
        .kid;

    let now = f.clock.now();
    let next = f
        .records()
        .await
        .into_iter()
        .find(|r| r.state == "next")
        .unwrap_or_else(|| panic!("no next key"));
    assert_eq!(next.activated_at, None);
    // One next key per algorithm: a second one is refused.
    let second_next = ring
        .new_record(SigningAlg::RS256, KeyState::Next, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        f.store.insert_signing_key(&second_next).await,
        Err(crate::storage::StoreError::Conflict(_))
    ));
    let mut retired = ring
        .new_record(SigningAlg::RS256, KeyState::Retired, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    retired.retired_at = Some(now);
    retired.remove_after = Some(now + Span::hours(1));
    f.store
        .insert_signing_key(&retired)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Not visible until the reload.
    let jwks: Value = serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    let jwks: Value = serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    let kids: BTreeSet<&str> = jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys"))
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(
        kids,
        BTreeSet::from([current.as_str(), first_next.as_str(), retired.kid.as_str()])
    );
    assert_eq!(ring.current_kid().as_deref(), Some(current.as_str()));
    assert_eq!(ring.algorithms(), vec!["RS256".to_owned()]);

    let signed = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(split(&signed).0["kid"], current.as_str());

    let expect = at_jwt(Some("client-1"));
    for record in [&next, &retired] {
        let key = f.private_key(record);
        let token = sign_with(
            &key,
            &header(Algorithm::RS256, Some(&record.kid), Some("at+jwt")),
            &f.claims(),
        );
        let _: Claims = ring
            .verify(&token, &expect)
            .unwrap_or_else(|e| panic!("{}: {e}", record.state));
    }

    // Past remove_after the retired key stops verifying at once and leaves the JWKS on
    // the next reload.
    let old_token = sign_with(
        &f.private_key(&retired),
        &header(Algorithm::RS256, Some(&retired.kid), Some("at+jwt")),
        &json!({"iss": ISSUER, "aud": "client-1", "exp": f.now() + 7200}),
    );
    f.clock.advance(Span::hours(1));
    assert_eq!(reason(ring.verify(&old_token, &expect)), "unknown key");
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    let jwks: Value = serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    assert!(!jwks.to_string().contains(&retired.kid));
}

#[tokio::test]
async fn a_stored_public_key_that_disagrees_with_the_private_key_is_refused() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let mut record = retired_record(&ring, &f).await;
    let other = PrivateKey::from_pkcs8(
        SigningAlg::RS256,
        generate_rsa_pkcs8()
            .unwrap_or_else(|e| panic!("{e}"))
            .expose_secret(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    record.public_jwk = other.public_jwk(&record.kid, SigningAlg::RS256);
    f.store
        .insert_signing_key(&record)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = ring.jwks_json();
    let err = ring
        .reload()
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(matches!(err, KeyError::Crypto(_)), "{err:?}");
    // The previous set stays in use.
    assert_eq!(ring.jwks_json(), before);
}

#[tokio::test]
async fn the_reloader_picks_up_keys_added_elsewhere() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let elsewhere = f.ring().await;
    let record = retired_record(&elsewhere, &f).await;
    let task = spawn_reloader(ring.clone(), Duration::from_millis(20));
    f.store
        .insert_signing_key(&record)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = false;
    for _ in 0..200 {
        if std::str::from_utf8(&ring.jwks_json())
            .unwrap_or_default()
            .contains(&record.kid)
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(seen, "the reloader never published the new key");
}

/// A retired RS256 key still within its window (any number of those may exist).
async fn retired_record(ring: &KeyRing, f: &Fixture) -> SigningKeyRecord {
    let now = f.clock.now();
    let mut record = ring
        .new_record(SigningAlg::RS256, KeyState::Retired, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    record.retired_at = Some(now);
    record.remove_after = Some(now + Span::hours(1));
    record
}

/// The single outcome of rotating a ring that signs RS256 only.
fn one(outcomes: Vec<RotationOutcome>) -> RotationOutcome {
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no outcome"))
}

fn count(records: &[SigningKeyRecord], state: &str) -> usize {
    records.iter().filter(|r| r.state == state).count()
}

#[tokio::test]
async fn rotation_promotes_next_and_retires_current_for_the_retention_window() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let old = ring
        .current_kid()
        .unwrap_or_else(|| panic!("no current key"));
    let next = f
        .records()
        .await
        .into_iter()
        .find(|r| r.state == "next")
        .unwrap_or_else(|| panic!("no next key"))
        .kid;
    f.clock.advance(Span::hours(1));
    let outcome = one(ring.rotate().await.unwrap_or_else(|e| panic!("{e}")));
    let RotationOutcome::Rotated {
        retired,
        current,
        next: Some(new_next),
        remove_after,
        ..
    } = outcome
    else {
        panic!("unexpected {outcome:?}");
    };
    assert_eq!(
        (retired.as_str(), current.as_str()),
        (old.as_str(), next.as_str())
    );
    assert_eq!(ring.current_kid().as_deref(), Some(next.as_str()));
    let records = f.records().await;
    assert_eq!(
        (
            count(&records, "current"),
            count(&records, "next"),
            count(&records, "retired")
        ),
        (1, 1, 1)
    );
    let by_kid = |kid: &str| {
        records
            .iter()
            .find(|r| r.kid == kid)
            .unwrap_or_else(|| panic!("{kid} is gone"))
            .clone()
    };
    let r = by_kid(&old);
    assert_eq!(r.retired_at, Some(f.clock.now()));
    assert_eq!(r.remove_after, Some(remove_after));
    assert_eq!(remove_after, f.clock.now() + Span::minutes(11));
    assert_eq!(by_kid(&next).activated_at, Some(f.clock.now()));
    assert_eq!(by_kid(&new_next).state, "next");

    // The ring reloaded after its own rotation, so it can rotate again.
    let again = one(ring.rotate().await.unwrap_or_else(|e| panic!("{e}")));
    assert!(matches!(again, RotationOutcome::Rotated { ref retired, .. } if *retired == next));
    // The first retired key is still within its window.
    assert_eq!(count(&f.records().await, "retired"), 2);
    f.clock.advance(Span::minutes(12));
    ring.rotate().await.unwrap_or_else(|e| panic!("{e}"));
    let records = f.records().await;
    assert!(
        records.iter().all(|r| r.kid != old && r.kid != next),
        "expired keys were not deleted"
    );
}

#[tokio::test]
async fn without_a_next_key_rotation_promotes_a_fresh_one_and_creates_a_next() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let next = f
        .records()
        .await
        .into_iter()
        .find(|r| r.state == "next")
        .unwrap_or_else(|| panic!("no next key"))
        .kid;
    let retired = ring
        .retire(&next, &crate::audit::Actor::cli())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(retired, RetireOutcome::Retired { ref previous_state, promoted: None, .. } if previous_state == "next")
    );
    assert!(!String::from_utf8_lossy(&ring.jwks_json()).contains(&next));
    let old = ring
        .current_kid()
        .unwrap_or_else(|| panic!("no current key"));
    let outcome = one(ring.rotate().await.unwrap_or_else(|e| panic!("{e}")));
    let RotationOutcome::Rotated {
        current,
        next: Some(new_next),
        ..
    } = outcome
    else {
        panic!("unexpected {outcome:?}");
    };
    assert_ne!(current, old);
    assert_ne!(current, new_next);
    let records = f.records().await;
    assert_eq!(
        (count(&records, "current"), count(&records, "next")),
        (1, 1)
    );
}

#[tokio::test]
async fn an_emergency_retirement_stops_verification_at_once() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let old = ring
        .current_kid()
        .unwrap_or_else(|| panic!("no current key"));
    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let other = f.ring().await;
    let outcome = ring
        .retire(&old, &crate::audit::Actor::cli())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let RetireOutcome::Retired {
        promoted: Some(promoted),
        next: Some(_),
        ..
    } = outcome
    else {
        panic!("unexpected {outcome:?}");
    };
    assert_eq!(ring.current_kid().as_deref(), Some(promoted.as_str()));
    assert_eq!(
        reason(ring.verify::<Claims>(&token, &at_jwt(Some("client-1")))),
        "unknown key"
    );
    // Another instance, even with a clock behind, drops it on its next reload.
    f.clock.advance(Span::seconds(-30));
    other.reload().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reason(other.verify::<Claims>(&token, &at_jwt(Some("client-1")))),
        "unknown key"
    );
    assert_eq!(count(&f.records().await, "current"), 1);
    let missing = ring
        .retire("no-such-kid", &crate::audit::Actor::cli())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(missing, RetireOutcome::NotFound { .. }));
}

#[tokio::test]
async fn scheduled_rotation_waits_for_the_interval_and_the_prepublication() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let day = Duration::from_secs(86_400);
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::No
    );
    f.clock.advance(Span::days(30));
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::Yes
    );
    ring.rotate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::No
    );
    // The new next key was created just now: due after 30 days, it has long been published.
    f.clock.advance(Span::days(30));
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::Yes
    );
    // A next key younger than the pre-publication window holds the rotation back.
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, 31 * day),
        RotationDue::Waiting
    );
}

#[tokio::test]
async fn a_ring_with_a_stale_view_loses_the_race_and_catches_up() {
    let f = Fixture::new().await;
    let first = f.ring().await;
    let second = f.ring().await;
    let won = one(first.rotate().await.unwrap_or_else(|e| panic!("{e}")));
    let RotationOutcome::Rotated { current, .. } = won else {
        panic!("unexpected {won:?}");
    };
    let lost = one(second.rotate().await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(
        lost,
        RotationOutcome::LostRace {
            alg: SigningAlg::RS256,
            current: Some(current.clone())
        }
    );
    assert_eq!(second.current_kid(), Some(current));
    let records = f.records().await;
    assert_eq!(
        (
            count(&records, "current"),
            count(&records, "next"),
            count(&records, "retired")
        ),
        (1, 1, 1)
    );
}

// ---------------------------------------------------------------------------------------
// ES256 and EdDSA, alongside RS256.

impl Fixture {
    async fn ring_with(&self, algorithms: &[SigningAlg]) -> KeyRing {
        let mut settings = crate::config::Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        settings.keys.algorithms = algorithms.to_vec();
        KeyRing::load_or_init_for(
            Arc::clone(&self.store),
            self.master(),
            Arc::new(self.clock.clone()),
            &settings,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The PKCS#8 DER of a stored key, decrypted.
    fn pkcs8(&self, record: &SigningKeyRecord) -> Vec<u8> {
        self.master()
            .decrypt(&record.encrypted_private_key, record.kid.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn current_record(&self, alg: SigningAlg) -> SigningKeyRecord {
        self.records()
            .await
            .into_iter()
            .find(|r| r.state == "current" && r.alg == alg.as_str())
            .unwrap_or_else(|| panic!("no current {alg} key"))
    }
}

const ALL: [SigningAlg; 3] = [SigningAlg::EdDSA, SigningAlg::RS256, SigningAlg::ES256];

fn thumbprint(members: &[(&str, &str)]) -> String {
    // RFC 7638 §3: required members, lexicographic order, no whitespace.
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{v}\""))
        .collect();
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{{{}}}", body.join(",")).as_bytes()))
}

#[tokio::test]
async fn every_configured_algorithm_gets_a_current_and_a_next_key() {
    let f = Fixture::new().await;
    // Given in any order; listed RS256 first.
    let ring = f.ring_with(&ALL).await;
    assert_eq!(ring.algorithms(), vec!["RS256", "ES256", "EdDSA"]);
    assert_eq!(ring.configured_algorithms(), &SigningAlg::ALL);
    let records = f.records().await;
    for alg in SigningAlg::ALL {
        let states: Vec<&str> = records
            .iter()
            .filter(|r| r.alg == alg.as_str())
            .map(|r| r.state.as_str())
            .collect();
        assert_eq!(states.len(), 2, "{alg}: {states:?}");
        assert!(
            states.contains(&"current") && states.contains(&"next"),
            "{alg}"
        );
        assert_eq!(
            ring.current_kid_for(alg).as_deref(),
            Some(f.current_record(alg).await.kid.as_str())
        );
    }
    // A second instance with the same configuration adds nothing.
    let again = f.ring_with(&ALL).await;
    assert_eq!(f.records().await.len(), 6);
    assert_eq!(again.jwks_json(), ring.jwks_json());
    // One that signs RS256 only still publishes (and verifies) every key.
    let rs_only = f.ring().await;
    assert_eq!(rs_only.algorithms(), vec!["RS256"]);
    assert_eq!(rs_only.jwks_json(), ring.jwks_json());
}

#[tokio::test]
async fn the_jwks_publishes_ec_and_okp_keys_with_their_thumbprints() {
    let f = Fixture::new().await;
    let ring = f.ring_with(&ALL).await;
    let jwks: Value = serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    let keys = jwks["keys"].as_array().unwrap_or_else(|| panic!("keys"));
    assert_eq!(keys.len(), 6);
    let str_of = |k: &Value, m: &str| k[m].as_str().unwrap_or_default().to_owned();
    let decoded_len = |k: &Value, m: &str| {
        URL_SAFE_NO_PAD
            .decode(str_of(k, m))
            .unwrap_or_else(|e| panic!("{m}: {e}"))
            .len()
    };
    for key in keys {
        let members: BTreeSet<&str> = key
            .as_object()
            .unwrap_or_else(|| panic!("object"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(key["use"], "sig");
        let kid = str_of(key, "kid");
        match str_of(key, "kty").as_str() {
            "EC" => {
                assert_eq!(
                    members,
                    BTreeSet::from(["alg", "crv", "kid", "kty", "use", "x", "y"])
                );
                assert_eq!(
                    (key["alg"].as_str(), key["crv"].as_str()),
                    (Some("ES256"), Some("P-256"))
                );
                assert_eq!((decoded_len(key, "x"), decoded_len(key, "y")), (32, 32));
                let (x, y) = (str_of(key, "x"), str_of(key, "y"));
                assert_eq!(
                    kid,
                    thumbprint(&[("crv", "P-256"), ("kty", "EC"), ("x", &x), ("y", &y)])
                );
            }
            "OKP" => {
                assert_eq!(
                    members,
                    BTreeSet::from(["alg", "crv", "kid", "kty", "use", "x"])
                );
                assert_eq!(
                    (key["alg"].as_str(), key["crv"].as_str()),
                    (Some("EdDSA"), Some("Ed25519"))
                );
                assert_eq!(decoded_len(key, "x"), 32);
                let x = str_of(key, "x");
                assert_eq!(
                    kid,
                    thumbprint(&[("crv", "Ed25519"), ("kty", "OKP"), ("x", &x)])
                );
            }
            "RSA" => {
                assert_eq!(
                    members,
                    BTreeSet::from(["alg", "e", "kid", "kty", "n", "use"])
                );
                assert_eq!(key["alg"], "RS256");
                let (e, n) = (str_of(key, "e"), str_of(key, "n"));
                assert_eq!(kid, thumbprint(&[("e", &e), ("kty", "RSA"), ("n", &n)]));
            }
            other => panic!("unexpected kty {other}"),
        }
        // What is published is what is stored.
        let stored = f
            .records()
            .await
            .into_iter()
            .find(|r| r.kid == kid)
            .unwrap_or_else(|| panic!("{kid} not stored"));
        assert_eq!(&stored.public_jwk, key);
    }
}

#[tokio::test]
async fn each_algorithm_signs_with_its_own_key_and_verifies_with_jsonwebtoken_from_the_jwk() {
    let f = Fixture::new().await;
    let ring = f.ring_with(&ALL).await;
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    for (alg, jwt_alg) in [
        (SigningAlg::RS256, Algorithm::RS256),
        (SigningAlg::ES256, Algorithm::ES256),
        (SigningAlg::EdDSA, Algorithm::EdDSA),
    ] {
        let token = ring
            .sign_with(alg, "JWT", &f.claims())
            .unwrap_or_else(|e| panic!("{e}"));
        let (header, _, _) = split(&token);
        let kid = ring.current_kid_for(alg).unwrap_or_default();
        assert_eq!(
            header,
            json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid})
        );
        // Our verifier.
        let claims: Claims = ring
            .verify(
                &token,
                &Expectations {
                    typ: "JWT",
                    ..at_jwt(Some("client-1"))
                },
            )
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(claims, f.claims());
        // jsonwebtoken, from nothing but the published JWK.
        let jwk = jwks
            .find(&kid)
            .unwrap_or_else(|| panic!("{kid} not in the JWKS"));
        let mut validation = jsonwebtoken::Validation::new(jwt_alg);
        validation.set_audience(&["client-1"]);
        let decoded = jsonwebtoken::decode::<Claims>(
            &token,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap_or_else(|e| panic!("{e}")),
            &validation,
        )
        .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(decoded.claims, f.claims());
        // And the other way round: jsonwebtoken signing with our stored private key.
        let record = f.current_record(alg).await;
        let pkcs8 = f.pkcs8(&record);
        let theirs = match alg {
            // jsonwebtoken wants PKCS#1 for RSA; aws-lc signs it directly instead.
            SigningAlg::RS256 => sign_with(
                &RsaKey::from_pkcs8(&pkcs8).unwrap_or_else(|e| panic!("{e}")),
                &header_for(jwt_alg, &kid),
                &f.claims(),
            ),
            SigningAlg::ES256 | SigningAlg::EdDSA => {
                let encoding = if alg == SigningAlg::ES256 {
                    EncodingKey::from_ec_der(&pkcs8)
                } else {
                    EncodingKey::from_ed_der(&pkcs8)
                };
                jsonwebtoken::encode(&header_for(jwt_alg, &kid), &f.claims(), &encoding)
                    .unwrap_or_else(|e| panic!("{alg}: {e}"))
            }
        };
        let _: Claims = ring
            .verify(&theirs, &at_jwt(Some("client-1")))
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
    }
    // An algorithm this ring is not configured for never signs.
    let rs_only = f.ring().await;
    assert!(matches!(
        rs_only.sign_with(SigningAlg::ES256, "JWT", &f.claims()),
        Err(KeyError::AlgorithmNotEnabled(SigningAlg::ES256))
    ));
}

fn header_for(alg: Algorithm, kid: &str) -> Header {
    header(alg, Some(kid), Some("at+jwt"))
}

#[tokio::test]
async fn a_kid_of_one_key_type_with_another_types_algorithm_is_refused() {
    let f = Fixture::new().await;
    let ring = f.ring_with(&ALL).await;
    let expect = at_jwt(Some("client-1"));
    let claims = f.claims();
    let ec = f.current_record(SigningAlg::ES256).await;
    let ed = f.current_record(SigningAlg::EdDSA).await;
    let rs = f.current_record(SigningAlg::RS256).await;
    let rsa = RsaKey::from_pkcs8(&f.pkcs8(&rs)).unwrap_or_else(|e| panic!("{e}"));
    let ec_key = EncodingKey::from_ec_der(&f.pkcs8(&ec));
    let ed_key = EncodingKey::from_ed_der(&f.pkcs8(&ed));
    let encode = |alg: Algorithm, kid: &str, key: &EncodingKey| {
        jsonwebtoken::encode(&header_for(alg, kid), &claims, key).unwrap_or_else(|e| panic!("{e}"))
    };

    let refused = [
        // An ES256 kid with an RS256 header, really signed by our RSA key.
        (
            "RS256 on the ES256 kid",
            sign_with(&rsa, &header_for(Algorithm::RS256, &ec.kid), &claims),
        ),
        // An EdDSA kid with an ES256 header, signed by our P-256 key.
        (
            "ES256 on the EdDSA kid",
            encode(Algorithm::ES256, &ed.kid, &ec_key),
        ),
        // An ES256 kid with an EdDSA header, signed by our Ed25519 key.
        (
            "EdDSA on the ES256 kid",
            encode(Algorithm::EdDSA, &ec.kid, &ed_key),
        ),
        // The RS256 kid with ES256 and EdDSA headers.
        (
            "ES256 on the RS256 kid",
            encode(Algorithm::ES256, &rs.kid, &ec_key),
        ),
        (
            "EdDSA on the RS256 kid",
            encode(Algorithm::EdDSA, &rs.kid, &ed_key),
        ),
        // ES384 on the P-256 key: same family, other algorithm.
        ("ES384 on the ES256 kid", {
            let h = b64_json(&json!({"alg": "ES384", "typ": "at+jwt", "kid": ec.kid}));
            let body = b64_json(&serde_json::to_value(&claims).unwrap_or_default());
            let sig = PrivateKey::from_pkcs8(SigningAlg::ES256, &f.pkcs8(&ec))
                .and_then(|k| k.sign(format!("{h}.{body}").as_bytes()))
                .unwrap_or_else(|e| panic!("{e}"));
            format!("{h}.{body}.{}", URL_SAFE_NO_PAD.encode(sig))
        }),
    ];
    for (name, token) in &refused {
        assert_eq!(
            reason(ring.verify(token, &expect)),
            "algorithm does not match the key",
            "{name}"
        );
    }
    // HS256 keyed with the public key's published forms, and `none`.
    for record in [&ec, &ed] {
        let jwk = record.public_jwk.to_string();
        let x = record.public_jwk["x"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for secret in [
            jwk.into_bytes(),
            x.clone().into_bytes(),
            URL_SAFE_NO_PAD.decode(&x).unwrap_or_default(),
        ] {
            let token = encode(
                Algorithm::HS256,
                &record.kid,
                &EncodingKey::from_secret(&secret),
            );
            assert_eq!(
                reason(ring.verify(&token, &expect)),
                "algorithm does not match the key"
            );
        }
        let h = b64_json(&json!({"alg": "none", "typ": "at+jwt", "kid": record.kid}));
        let body = b64_json(&serde_json::to_value(&claims).unwrap_or_default());
        assert_eq!(
            reason(ring.verify(&format!("{h}.{body}."), &expect)),
            "algorithm does not match the key"
        );
    }
    // The right algorithm with the wrong key of that type is a bad signature.
    let other_ec = PrivateKey::from_pkcs8(
        SigningAlg::ES256,
        super::material::generate_pkcs8(SigningAlg::ES256)
            .unwrap_or_else(|e| panic!("{e}"))
            .expose_secret(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let h = b64_json(&json!({"alg": "ES256", "typ": "at+jwt", "kid": ec.kid}));
    let body = b64_json(&serde_json::to_value(&claims).unwrap_or_default());
    let sig = other_ec
        .sign(format!("{h}.{body}").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let forged = format!("{h}.{body}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(reason(ring.verify(&forged, &expect)), "bad signature");
    // Controls: the right algorithm with the right key passes.
    let _: Claims = ring
        .verify(&encode(Algorithm::ES256, &ec.kid, &ec_key), &expect)
        .unwrap_or_else(|e| panic!("{e}"));
    let _: Claims = ring
        .verify(&encode(Algorithm::EdDSA, &ed.kid, &ed_key), &expect)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn rotation_covers_every_configured_algorithm_in_its_own_lifecycle() {
    let f = Fixture::new().await;
    let ring = f.ring_with(&ALL).await;
    let before: Vec<Option<String>> = SigningAlg::ALL
        .iter()
        .map(|a| ring.current_kid_for(*a))
        .collect();
    let outcomes = ring.rotate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes.len(), 3);
    for (outcome, (alg, old)) in outcomes.iter().zip(SigningAlg::ALL.iter().zip(&before)) {
        let RotationOutcome::Rotated {
            alg: rotated,
            retired,
            current,
            ..
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!(rotated, alg);
        assert_eq!(Some(retired), old.as_ref());
        assert_eq!(ring.current_kid_for(*alg).as_ref(), Some(current));
        let records = f.records().await;
        let of_alg: Vec<&SigningKeyRecord> =
            records.iter().filter(|r| r.alg == alg.as_str()).collect();
        assert_eq!(
            (
                count_refs(&of_alg, "current"),
                count_refs(&of_alg, "next"),
                count_refs(&of_alg, "retired")
            ),
            (1, 1, 1),
            "{alg}"
        );
    }
    // One algorithm alone.
    let es = ring
        .rotate_alg_by(SigningAlg::ES256, &crate::audit::Actor::cli())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        es,
        RotationOutcome::Rotated {
            alg: SigningAlg::ES256,
            ..
        }
    ));
    let records = f.records().await;
    assert_eq!(records.iter().filter(|r| r.alg == "ES256").count(), 4);
    assert_eq!(records.iter().filter(|r| r.alg == "RS256").count(), 3);
    // Scheduled rotation is per algorithm too.
    let day = Duration::from_secs(86_400);
    f.clock.advance(Span::days(30));
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    for alg in SigningAlg::ALL {
        assert_eq!(
            ring.rotation_due(alg, 30 * day, day),
            RotationDue::Yes,
            "{alg}"
        );
    }
    ring.rotate_alg_by(SigningAlg::EdDSA, &crate::audit::Actor::cli())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ring.rotation_due(SigningAlg::EdDSA, 30 * day, day),
        RotationDue::No
    );
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::Yes
    );
}

fn count_refs(records: &[&SigningKeyRecord], state: &str) -> usize {
    records.iter().filter(|r| r.state == state).count()
}

#[tokio::test]
async fn instances_creating_a_next_key_at_once_keep_one() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let next = f
        .records()
        .await
        .into_iter()
        .find(|r| r.state == "next")
        .unwrap_or_else(|| panic!("no next"));
    let rings = [f.ring().await, f.ring().await, f.ring().await];
    // Without a next key (say, an algorithm enabled again after its keys were retired
    // while it was dropped: nothing replaced them), three instances add one at the same
    // moment.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/k.db", f._dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("delete from signing_keys where kid = $1")
        .bind(&next.kid)
        .execute(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.close().await;
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&f.records().await, "next"), 0);
    for r in &rings {
        r.reload().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let (a, b, c) = tokio::join!(
        rings[0].ensure_next(SigningAlg::RS256),
        rings[1].ensure_next(SigningAlg::RS256),
        rings[2].ensure_next(SigningAlg::RS256),
    );
    for result in [a, b, c] {
        result.unwrap_or_else(|e| panic!("a losing instance failed: {e}"));
    }
    assert_eq!(count(&f.records().await, "next"), 1);
    // Every ring ended up with the winner's key.
    let kids: BTreeSet<Vec<u8>> = rings.iter().map(|r| r.jwks_json().to_vec()).collect();
    assert_eq!(kids.len(), 1);
}

#[tokio::test]
async fn housekeeping_deletes_keys_past_remove_after_and_reloads() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let old = ring.current_kid().unwrap_or_default();
    ring.rotate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ring.purge_removed().await.unwrap_or_else(|e| panic!("{e}")),
        0
    );
    assert!(String::from_utf8_lossy(&ring.jwks_json()).contains(&old));
    f.clock.advance(Span::minutes(11) + Span::seconds(1));
    assert_eq!(
        ring.purge_removed().await.unwrap_or_else(|e| panic!("{e}")),
        1
    );
    assert!(f.records().await.iter().all(|r| r.kid != old));
    assert!(!String::from_utf8_lossy(&ring.jwks_json()).contains(&old));
    assert_eq!(f.records().await.len(), 2);
}

#[tokio::test]
async fn a_master_key_rotation_re_encrypts_every_key_and_nothing_else() {
    let f = Fixture::new().await;
    let ring = f.ring_with(&ALL).await;
    let token = ring
        .sign_with(SigningAlg::ES256, "at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let before = f.records().await;
    let new_b64 = random_master_key();
    let new = MasterKey::from_base64(&new_b64).unwrap_or_else(|e| panic!("{e}"));
    let actor = crate::audit::Actor::cli();

    // The same key, and a wrong current key, are refused and change nothing.
    assert!(matches!(
        rotate_master_key(
            f.store.as_ref(),
            &f.master(),
            &f.master(),
            f.clock.now(),
            &actor
        )
        .await,
        Err(KeyError::BadMasterKey(_))
    ));
    assert!(matches!(
        rotate_master_key(
            f.store.as_ref(),
            &MasterKey::generate(),
            &new,
            f.clock.now(),
            &actor
        )
        .await,
        Err(KeyError::MasterKeyMismatch)
    ));
    assert_eq!(
        f.records()
            .await
            .iter()
            .map(|r| r.encrypted_private_key.clone())
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|r| r.encrypted_private_key.clone())
            .collect::<Vec<_>>()
    );

    let done = rotate_master_key(f.store.as_ref(), &f.master(), &new, f.clock.now(), &actor)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.reencrypted.len(), 6);
    let after = f.records().await;
    for (old, new_row) in before.iter().zip(&after) {
        assert_eq!(old.kid, new_row.kid);
        assert_eq!(old.public_jwk, new_row.public_jwk);
        assert_eq!(old.state, new_row.state);
        assert_ne!(old.encrypted_private_key, new_row.encrypted_private_key);
        let plain_old = f.pkcs8(old);
        let plain_new = new
            .decrypt(&new_row.encrypted_private_key, new_row.kid.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain_old, plain_new);
        assert!(matches!(
            f.master()
                .decrypt(&new_row.encrypted_private_key, new_row.kid.as_bytes()),
            Err(KeyError::MasterKeyMismatch)
        ));
    }
    let audit = f
        .store
        .list_audit(&crate::audit::AuditQuery {
            kind: Some("key.master_rotated".into()),
            user_id: None,
            limit: 10,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["reencrypted"], 6);

    // A ring under the new key loads the same keys; tokens signed before still verify.
    let fresh = KeyRing::load_or_init_for(
        Arc::clone(&f.store),
        MasterKey::from_base64(&new_b64).unwrap_or_else(|e| panic!("{e}")),
        Arc::new(f.clock.clone()),
        &{
            let mut s = crate::config::Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
            s.keys.algorithms = ALL.to_vec();
            s
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fresh.jwks_json(), ring.jwks_json());
    let _: Claims = fresh
        .verify(&token, &at_jwt(Some("client-1")))
        .unwrap_or_else(|e| panic!("{e}"));
    // A new ring under the old key fails; the old ring keeps signing but refuses to add
    // keys under the old master key, even before it reloads.
    assert!(matches!(
        KeyRing::load_or_init(Arc::clone(&f.store), f.master(), Arc::new(f.clock.clone())).await,
        Err(KeyError::MasterKeyMismatch)
    ));
    let rows = f.records().await;
    assert!(matches!(
        ring.rotate().await,
        Err(KeyError::MasterKeyMismatch)
    ));
    assert_eq!(
        f.records().await.len(),
        rows.len(),
        "a stale ring wrote keys"
    );
    assert!(matches!(
        ring.reload().await,
        Err(KeyError::MasterKeyMismatch)
    ));
    assert!(matches!(
        ring.rotate_alg_by(SigningAlg::RS256, &actor).await,
        Err(KeyError::MasterKeyMismatch)
    ));
    assert!(matches!(ring.ensure_next(SigningAlg::RS256).await, Ok(())));
    assert_eq!(f.records().await.len(), rows.len());
    let _: Claims = ring
        .verify(
            &ring
                .sign("at+jwt", &f.claims())
                .unwrap_or_else(|e| panic!("{e}")),
            &at_jwt(Some("client-1")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn an_algorithm_left_without_a_current_key_gets_one_from_the_scheduler() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let current = ring
        .current_kid()
        .unwrap_or_else(|| panic!("no current key"));
    // As a `keys retire` run by a command whose configuration lacked the algorithm could
    // once leave it: no current key at all.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/k.db", f._dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("delete from signing_keys where kid = $1")
        .bind(&current)
        .execute(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.close().await;
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    let day = Duration::from_secs(86_400);
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::NeedsCurrent
    );
    ring.ensure_current(SigningAlg::RS256)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let records = f.records().await;
    assert_eq!(count(&records, "current"), 1);
    assert_eq!(count(&records, "next"), 1);
    assert!(ring.current_kid().is_some_and(|k| k != current));
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::No
    );
}

#[tokio::test]
async fn retiring_without_a_successor_is_only_for_algorithms_not_configured() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let current = ring
        .current_kid()
        .unwrap_or_else(|| panic!("no current key"));
    let refused = ring
        .retire_with(&current, Successor::None, &crate::audit::Actor::cli())
        .await;
    assert!(
        matches!(refused, Err(KeyError::StillConfigured(SigningAlg::RS256))),
        "{refused:?}"
    );
    assert_eq!(ring.current_kid(), Some(current));
    assert_eq!(count(&f.records().await, "retired"), 0);
}
