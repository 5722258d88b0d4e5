//! Second factors and authentication levels: the `acr` values Portcullis asserts, the
//! `amr` values (RFC 8176) a session's factors come to, TOTP codes (RFC 6238) and
//! recovery codes. Pure: the caller passes the time and the random bytes come from the
//! operating system's CSPRNG.

use std::collections::BTreeMap;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::user::UserId;

/// `acr` of an authentication with a password only.
pub const ACR_PASSWORD: &str = "urn:portcullis:acr:password";
/// `acr` of a multi-factor authentication: the OpenID Provider Authentication Policy
/// Extension's multi-factor policy URI, which relying parties already recognise.
pub const ACR_MFA: &str = "http://schemas.openid.net/pape/policies/2007/06/multi-factor";

/// The authentication context classes this provider asserts (`acr`, OIDC Core §2), lowest
/// first; discovery lists them as `acr_values_supported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthLevel {
    /// Something the user knows.
    Password,
    /// Two factors of different kinds, e.g. a password and a code from an authenticator.
    MultiFactor,
}

impl AuthLevel {
    pub const ALL: [Self; 2] = [Self::Password, Self::MultiFactor];

    pub fn acr(self) -> &'static str {
        match self {
            Self::Password => ACR_PASSWORD,
            Self::MultiFactor => ACR_MFA,
        }
    }

    pub fn parse(acr: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.acr() == acr)
    }

    /// The level an authentication with these `amr` values reached.
    pub fn of_amr(amr: &[String]) -> Self {
        if amr.iter().any(|m| m == AMR_MFA) {
            Self::MultiFactor
        } else {
            Self::Password
        }
    }

    /// The level `acr_values` (OIDC Core §3.1.2.1: voluntary, in order of preference)
    /// asks for: the lowest supported value listed, since any of them satisfies the
    /// request; `None` when no listed value is one of ours (they are then ignored).
    pub fn requested(acr_values: &str) -> Option<Self> {
        acr_values.split(' ').filter_map(Self::parse).min()
    }
}

/// RFC 8176 §2: password.
pub const AMR_PWD: &str = "pwd";
/// RFC 8176 §2: one-time password (TOTP, and the single-use recovery codes).
pub const AMR_OTP: &str = "otp";
/// RFC 8176 §2: multiple-factor authentication.
pub const AMR_MFA: &str = "mfa";
/// RFC 8176 §2: proof-of-possession of a hardware-secured key. A passkey's assertion
/// does not say whether its key is hardware-bound or synced (attestation is not asked
/// for), so every passkey is reported as `hwk`: `swk` would be no more accurate.
pub const AMR_HWK: &str = "hwk";
/// RFC 8176 §2: user presence test… here, user verification (PIN or biometric) done by
/// the authenticator (WebAuthn Level 3 §6.1, the UV flag).
pub const AMR_USER: &str = "user";

/// The factors a browser session was authenticated with, and when (Unix seconds): the
/// `amr` method of each, so a step-up asks only for what is missing and `max_age` is
/// checked against the factor the level needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionFactors(pub BTreeMap<String, i64>);

impl SessionFactors {
    pub fn password(at: OffsetDateTime) -> Self {
        Self(BTreeMap::from([(AMR_PWD.to_owned(), at.unix_timestamp())]))
    }

    /// A passwordless sign-in with a passkey that verified its user: possession of the
    /// key and the user verification are two factors (`hwk`, `user`, hence `mfa`).
    pub fn passkey(at: OffsetDateTime) -> Self {
        Self(BTreeMap::from([
            (AMR_HWK.to_owned(), at.unix_timestamp()),
            (AMR_USER.to_owned(), at.unix_timestamp()),
        ]))
    }

    pub fn with(mut self, method: &str, at: OffsetDateTime) -> Self {
        self.0.insert(method.to_owned(), at.unix_timestamp());
        self
    }

    pub fn has(&self, method: &str) -> bool {
        self.0.contains_key(method)
    }

    /// RFC 8176 values, sorted, with `mfa` when two factors were used.
    pub fn amr(&self) -> Vec<String> {
        let mut amr: Vec<String> = self.0.keys().cloned().collect();
        if self.0.len() >= 2 {
            amr.push(AMR_MFA.to_owned());
        }
        amr
    }

    pub fn level(&self) -> AuthLevel {
        AuthLevel::of_amr(&self.amr())
    }
}

/// Digits of a TOTP code.
pub const TOTP_DIGITS: usize = 6;
/// RFC 6238 §4.1 time step.
pub const TOTP_STEP_SECS: u64 = 30;
/// RFC 6238 §5.2: codes of one step before and after are accepted (clock drift).
pub const TOTP_SKEW: u8 = 1;
/// Bytes of a TOTP secret: 160 bits, the HMAC-SHA1 output size (RFC 4226 §4 R6).
pub const TOTP_SECRET_LEN: usize = 20;

/// The associated data a factor secret is sealed with under the master key: its row, and
/// a prefix no signing key id has, so no sealed blob opens in another place.
pub fn factor_secret_aad(factor: uuid::Uuid) -> String {
    format!("factor:{factor}")
}

/// A fresh TOTP secret.
pub fn generate_totp_secret() -> Vec<u8> {
    let mut bytes = vec![0u8; TOTP_SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Why a presented code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRejection {
    /// Not six digits (spaces aside): never compared.
    Malformed,
    /// Six digits, not the code of any step in the window.
    Wrong,
    /// The code of a step already used (RFC 6238 §5.2: accepted once).
    Replayed,
}

/// What a user typed as a TOTP code, spaces removed, if it is six ASCII digits.
pub fn normalize_totp_code(typed: &str) -> Option<String> {
    let code: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    (code.len() == TOTP_DIGITS && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// The RFC 6238 generator for `secret`, labelled for authenticator apps.
pub fn totp(secret: &[u8], issuer: &str, account: &str) -> Result<totp_rs::Totp, String> {
    // otpauth URIs separate issuer and account with ':', so neither may contain one.
    let label = |s: &str| s.replace(':', " ");
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(TOTP_DIGITS as u8)
        .with_skew(u16::from(TOTP_SKEW))
        .with_step_duration(TOTP_STEP_SECS)
        .with_secret(secret.to_vec())
        .with_issuer(Some(label(issuer)))
        .with_account_name(label(account))
        .build()
        .map_err(|e| e.to_string())
}

/// Checks `typed` against `secret` at `now`: the accepted time step, which must be above
/// `last_used_step` (the caller stores it, atomically, so the code works once).
pub fn check_totp(
    secret: &[u8],
    typed: &str,
    now: OffsetDateTime,
    last_used_step: Option<u64>,
) -> Result<u64, CodeRejection> {
    let code = normalize_totp_code(typed).ok_or(CodeRejection::Malformed)?;
    let generator = totp(secret, "portcullis", "check").map_err(|_| CodeRejection::Wrong)?;
    let time = u64::try_from(now.unix_timestamp()).map_err(|_| CodeRejection::Wrong)?;
    let step = generator.check(&code, time).ok_or(CodeRejection::Wrong)?;
    match last_used_step {
        Some(last) if step <= last => Err(CodeRejection::Replayed),
        _ => Ok(step),
    }
}

/// How many recovery codes a set has.
pub const RECOVERY_CODES: usize = 10;
/// Random bytes per recovery code: 80 bits, 16 base32 characters.
const RECOVERY_CODE_BYTES: usize = 10;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A new set of recovery codes, formatted `xxxx-xxxx-xxxx-xxxx`.
pub fn generate_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; RECOVERY_CODE_BYTES];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let chars = base32(&bytes);
            chars
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// What a user typed as a recovery code, without separators and lower-cased, if it has
/// the shape of one.
pub fn normalize_recovery_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (code.len() == RECOVERY_CODE_BYTES * 8 / 5 && code.bytes().all(|b| BASE32.contains(&b)))
        .then_some(code)
}

/// The stored form of a recovery code: SHA-256 over the user id and the normalized code,
/// so equal codes of two users hash apart.
pub fn recovery_code_hash(user: UserId, normalized: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"portcullis recovery code\0");
    h.update(user.0.as_bytes());
    h.update(normalized.as_bytes());
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_passkey_sign_in_is_multi_factor() {
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let factors = super::SessionFactors::passkey(at);
        assert_eq!(factors.amr(), ["hwk", "user", "mfa"]);
        assert_eq!(factors.level(), super::AuthLevel::MultiFactor);
        let second = super::SessionFactors::password(at).with(super::AMR_HWK, at);
        assert_eq!(second.amr(), ["hwk", "pwd", "mfa"]);
    }

    use super::*;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap_or_else(|e| panic!("{e}"))
    }

    // RFC 6238 Appendix B: the SHA-1 test secret and vectors (8 digits there; the last six
    // digits are the 6-digit code, since the code is the value modulo 10^digits).
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_vectors_are_accepted_within_one_step_and_not_beyond() {
        for (time, code8) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            let code = &code8[2..];
            let step = (time as u64) / TOTP_STEP_SECS;
            assert_eq!(check_totp(RFC_SECRET, code, at(time), None), Ok(step));
            // ±1 step accepted, ±2 refused.
            assert_eq!(check_totp(RFC_SECRET, code, at(time + 30), None), Ok(step));
            assert_eq!(check_totp(RFC_SECRET, code, at(time - 30), None), Ok(step));
            assert_eq!(
                check_totp(RFC_SECRET, code, at(time + 60), None),
                Err(CodeRejection::Wrong)
            );
            assert_eq!(
                check_totp(RFC_SECRET, code, at(time - 60), None),
                Err(CodeRejection::Wrong)
            );
            // Once used, the same step (or an earlier one) is a replay.
            assert_eq!(
                check_totp(RFC_SECRET, code, at(time), Some(step)),
                Err(CodeRejection::Replayed)
            );
        }
    }

    #[test]
    fn malformed_codes_are_never_compared() {
        for bad in [
            "",
            "12345",
            "1234567",
            "12a456",
            "١٢٣٤٥٦",
            "123 45",
            "+12345",
        ] {
            assert_eq!(
                check_totp(RFC_SECRET, bad, at(59), None),
                Err(CodeRejection::Malformed),
                "{bad}"
            );
        }
        assert_eq!(normalize_totp_code(" 287 082 "), Some("287082".to_owned()));
    }

    #[test]
    fn recovery_codes_are_distinct_well_formed_and_hash_per_user() {
        let codes = generate_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        for code in &codes {
            assert_eq!(code.len(), 19, "{code}");
            let n = normalize_recovery_code(code).unwrap_or_else(|| panic!("{code}"));
            assert_eq!(
                normalize_recovery_code(&code.to_uppercase()),
                Some(n.clone())
            );
            assert_eq!(normalize_recovery_code(&n), Some(n));
        }
        assert_eq!(normalize_recovery_code("abcd-efgh"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-ijkl-mno1"), None);
        let (a, b) = (UserId(uuid::Uuid::new_v4()), UserId(uuid::Uuid::new_v4()));
        assert_ne!(recovery_code_hash(a, "x"), recovery_code_hash(b, "x"));
    }

    #[test]
    fn levels_follow_the_factors_and_acr_values() {
        let t = at(1_000);
        let pwd = SessionFactors::password(t);
        assert_eq!(pwd.amr(), vec!["pwd"]);
        assert_eq!(pwd.level(), AuthLevel::Password);
        let both = pwd.with(AMR_OTP, t);
        assert_eq!(both.amr(), vec!["otp", "pwd", "mfa"]);
        assert_eq!(both.level(), AuthLevel::MultiFactor);
        assert_eq!(AuthLevel::requested(ACR_MFA), Some(AuthLevel::MultiFactor));
        assert_eq!(
            AuthLevel::requested(&format!("urn:other {ACR_MFA} {ACR_PASSWORD}")),
            Some(AuthLevel::Password)
        );
        assert_eq!(AuthLevel::requested("urn:other"), None);
        assert_eq!(AuthLevel::requested(""), None);
    }
}
