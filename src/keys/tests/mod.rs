//! The key ring against a real SQLite store: creation, reuse, encryption at rest, the
//! JWKS, every way a token must be refused, and rotation. The fixture and helpers are here;
//! the tests are grouped by concern in the files below.

mod master;
mod rotation;
mod snapshot;
mod verify;

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
use super::snapshot::KeyState;
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

    /// The oldest stored key in `state`.
    async fn first_in(&self, state: KeyState) -> SigningKeyRecord {
        self.records()
            .await
            .into_iter()
            .find(|r| r.state == state)
            .unwrap_or_else(|| panic!("no {state} key"))
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
            .find(|r| r.state == KeyState::Current)
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
fn current_kid(ring: &KeyRing) -> String {
    ring.current_kid()
        .unwrap_or_else(|| panic!("no current key"))
}

fn one(outcomes: Vec<RotationOutcome>) -> RotationOutcome {
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no outcome"))
}

fn count(records: &[SigningKeyRecord], state: KeyState) -> usize {
    records.iter().filter(|r| r.state == state).count()
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
            .find(|r| r.state == KeyState::Current && r.alg == alg)
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

fn header_for(alg: Algorithm, kid: &str) -> Header {
    header(alg, Some(kid), Some("at+jwt"))
}

fn count_refs(records: &[&SigningKeyRecord], state: KeyState) -> usize {
    records.iter().filter(|r| r.state == state).count()
}
