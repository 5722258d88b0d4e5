//! The checks a JWT must pass besides its signature: header shape, `typ` (RFC 9068 §4),
//! and the registered claims (RFC 7519 §4.1) against the injected clock.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::KeyError;

/// Larger tokens are refused before any parsing.
pub(super) const MAX_TOKEN_LEN: usize = 16 * 1024;

/// How far in the future `iat` may be (clock skew between instances and clients).
const IAT_SKEW_SECONDS: i64 = 60;

/// What a token must say to be accepted by `KeyRing::verify`.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The header `typ`, e.g. `at+jwt` (RFC 9068) or `JWT`; compared case-insensitively,
    /// with or without the `application/` prefix.
    pub typ: &'a str,
    pub issuer: &'a str,
    /// When set, `aud` (a string or an array) must contain it.
    pub audience: Option<&'a str>,
    /// Accept a token past its `exp` (e.g. an `id_token_hint` at logout). The signature,
    /// issuer, audience and type are still checked.
    pub allow_expired: bool,
}

#[derive(Serialize)]
struct JwsHeader<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// The JWS compact serialization (RFC 7515 §7.1) of `claims` under
/// `{"alg", "typ", "kid"}`; `sign` signs the signing input.
pub(super) fn encode<T: Serialize>(
    alg: &str,
    typ: &str,
    kid: &str,
    claims: &T,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, KeyError>,
) -> Result<String, KeyError> {
    let header = serde_json::to_vec(&JwsHeader { alg, typ, kid })
        .map_err(|e| KeyError::Crypto(format!("serializing the JWT header: {e}")))?;
    let claims = serde_json::to_vec(claims)
        .map_err(|e| KeyError::Crypto(format!("serializing the JWT claims: {e}")))?;
    // base64 of header, claims and a 2048-bit signature, plus the dots.
    let mut token = String::with_capacity((header.len() + claims.len() + 256) * 4 / 3 + 8);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
    let signature = sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// The header members verification decides on, read before the key is chosen.
#[derive(Deserialize)]
pub(super) struct PeekedHeader {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// Any critical extension is one we do not understand (RFC 7515 §4.1.11).
    pub crit: Option<Value>,
}

pub(super) fn peek_header(token: &str) -> Result<PeekedHeader, KeyError> {
    let encoded = token
        .split('.')
        .next()
        .ok_or(KeyError::Invalid("malformed token"))?;
    let json = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| KeyError::Invalid("malformed token"))?;
    // Duplicate members are an error here, so the header cannot say two things at once.
    serde_json::from_slice(&json).map_err(|_| KeyError::Invalid("malformed token"))
}

pub(super) fn check_typ(actual: Option<&str>, expected: &str) -> Result<(), KeyError> {
    const PREFIX: &[u8] = b"application/";
    let ok = actual.is_some_and(|actual| {
        let actual = actual.as_bytes();
        actual.eq_ignore_ascii_case(expected.as_bytes())
            || actual
                .split_at_checked(PREFIX.len())
                .is_some_and(|(p, rest)| {
                    p.eq_ignore_ascii_case(PREFIX) && rest.eq_ignore_ascii_case(expected.as_bytes())
                })
    });
    if ok {
        Ok(())
    } else {
        Err(KeyError::Invalid("wrong token type"))
    }
}

/// `exp` is required and must be after `now` (unless expired tokens are allowed), `nbf`
/// must not be after `now`, and `iat` may be at most a minute ahead.
pub(super) fn check_claims(
    claims: &Value,
    expected: &Expectations<'_>,
    now: OffsetDateTime,
) -> Result<(), KeyError> {
    let claims = claims
        .as_object()
        .ok_or(KeyError::Invalid("malformed claims"))?;

    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(KeyError::Invalid("wrong issuer"));
    }

    if let Some(audience) = expected.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !ok {
            return Err(KeyError::Invalid("wrong audience"));
        }
    }

    let now = now.unix_timestamp() as f64;
    let exp = numeric_date(claims.get("exp"))?.ok_or(KeyError::Invalid("missing exp"))?;
    if !expected.allow_expired && exp <= now {
        return Err(KeyError::Invalid("expired"));
    }
    if numeric_date(claims.get("nbf"))?.is_some_and(|nbf| nbf > now) {
        return Err(KeyError::Invalid("not yet valid"));
    }
    if numeric_date(claims.get("iat"))?.is_some_and(|iat| iat > now + IAT_SKEW_SECONDS as f64) {
        return Err(KeyError::Invalid("issued in the future"));
    }
    Ok(())
}

/// RFC 7519 §2 NumericDate: seconds, possibly fractional. Anything else is malformed.
fn numeric_date(value: Option<&Value>) -> Result<Option<f64>, KeyError> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or(KeyError::Invalid("malformed claims")),
        Some(_) => Err(KeyError::Invalid("malformed claims")),
    }
}

/// Reasons from jsonwebtoken, reduced to ours.
pub(super) fn from_jwt_error(error: &jsonwebtoken::errors::Error) -> KeyError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => KeyError::Invalid("bad signature"),
        ErrorKind::InvalidAlgorithm => KeyError::Invalid("algorithm does not match the key"),
        _ => KeyError::Invalid("malformed token"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn expectations(audience: Option<&str>) -> Expectations<'_> {
        Expectations {
            typ: "at+jwt",
            issuer: "https://id.example",
            audience,
            allow_expired: false,
        }
    }

    #[test]
    fn typ_matches_case_insensitively_with_or_without_prefix() {
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/AT+jwt",
        ] {
            assert!(check_typ(Some(typ), "at+jwt").is_ok(), "{typ}");
        }
        for typ in [
            None,
            Some("JWT"),
            Some("application/"),
            Some("x/at+jwt"),
            Some("at+jwt "),
        ] {
            assert!(check_typ(typ, "at+jwt").is_err(), "{typ:?}");
        }
        // Multi-byte input near the prefix boundary must not panic.
        assert!(check_typ(Some("applicatio\u{e9}at+jwt"), "at+jwt").is_err());
    }

    #[test]
    fn audience_may_be_a_string_or_an_array() {
        let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap_or_else(|e| panic!("{e}"));
        let base = json!({"iss": "https://id.example", "exp": 2_000});
        let with = |aud: Value| {
            let mut c = base.clone();
            c["aud"] = aud;
            c
        };
        let exp = expectations(Some("client-1"));
        assert!(check_claims(&with(json!("client-1")), &exp, now).is_ok());
        assert!(check_claims(&with(json!(["x", "client-1"])), &exp, now).is_ok());
        assert!(check_claims(&with(json!(["x"])), &exp, now).is_err());
        assert!(check_claims(&with(json!(1)), &exp, now).is_err());
        assert!(check_claims(&base, &exp, now).is_err());
        assert!(check_claims(&base, &expectations(None), now).is_ok());
    }

    #[test]
    fn times_are_checked_against_the_given_instant() {
        let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap_or_else(|e| panic!("{e}"));
        let exp = expectations(None);
        let check = |c: Value| check_claims(&c, &exp, now);
        let iss = "https://id.example";
        assert!(check(json!({"iss": iss, "exp": 1_001})).is_ok());
        assert!(check(json!({"iss": iss, "exp": 1_000.5})).is_ok());
        assert!(matches!(
            check(json!({"iss": iss, "exp": 1_000})),
            Err(KeyError::Invalid("expired"))
        ));
        assert!(matches!(
            check(json!({"iss": iss})),
            Err(KeyError::Invalid("missing exp"))
        ));
        assert!(matches!(
            check(json!({"iss": iss, "exp": "2000"})),
            Err(KeyError::Invalid("malformed claims"))
        ));
        assert!(check(json!({"iss": iss, "exp": 2_000, "nbf": 1_000})).is_ok());
        assert!(matches!(
            check(json!({"iss": iss, "exp": 2_000, "nbf": 1_001})),
            Err(KeyError::Invalid("not yet valid"))
        ));
        assert!(check(json!({"iss": iss, "exp": 2_000, "iat": 1_060})).is_ok());
        assert!(matches!(
            check(json!({"iss": iss, "exp": 2_000, "iat": 1_061})),
            Err(KeyError::Invalid("issued in the future"))
        ));
    }
}
