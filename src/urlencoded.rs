//! Strict `application/x-www-form-urlencoded` parsing for every form, OAuth endpoint and
//! admin query string: a repeated parameter, a malformed percent-escape, invalid UTF-8 or
//! too many parameters are refused instead of being guessed at (RFC 6749 §3.1: "Request
//! and response parameters MUST NOT be included more than once"). The body size limits
//! are the extractors' (`http::form`).

use std::collections::HashMap;

use serde::de::DeserializeOwned;

/// More parameters than any of our forms or endpoints take.
const MAX_PARAMS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The name is kept for tests and logs, never echoed into a page.
    #[error("a parameter is repeated")]
    Duplicate(String),
    #[error("the request is not valid form encoding")]
    BadEncoding,
    #[error("the request is not valid UTF-8")]
    BadUtf8,
    /// NUL and other control characters have no place in any parameter we take (and
    /// Postgres refuses NUL in text).
    #[error("the request contains control characters")]
    ControlCharacter,
    #[error("the request has too many parameters")]
    TooManyParams,
    #[error("{0}")]
    Shape(String),
}

/// Parses a urlencoded string into unique name/value pairs.
pub fn parse_pairs(input: &[u8]) -> Result<HashMap<String, String>, FormError> {
    let mut out = HashMap::new();
    if input.is_empty() {
        return Ok(out);
    }
    for (i, part) in input.split(|b| *b == b'&').enumerate() {
        if i >= MAX_PARAMS {
            return Err(FormError::TooManyParams);
        }
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.iter().position(|b| *b == b'=') {
            Some(eq) => (&part[..eq], &part[eq + 1..]),
            None => (part, &b""[..]),
        };
        let name = decode(name)?;
        let value = decode(value)?;
        if out.contains_key(&name) {
            return Err(FormError::Duplicate(name));
        }
        out.insert(name, value);
    }
    Ok(out)
}

fn decode(raw: &[u8]) -> Result<String, FormError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or(FormError::BadEncoding)?;
                let hi = hex_val(hex[0]).ok_or(FormError::BadEncoding)?;
                let lo = hex_val(hex[1]).ok_or(FormError::BadEncoding)?;
                bytes.push(hi << 4 | lo);
                i += 2;
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    let text = String::from_utf8(bytes).map_err(|_| FormError::BadUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(FormError::ControlCharacter);
    }
    Ok(text)
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Validates `input` strictly, then deserializes it into `T`. Once the strict checks
/// pass, serde_urlencoded reads exactly the same names and values.
pub fn parse_strict<T: DeserializeOwned>(input: &[u8]) -> Result<T, FormError> {
    parse_pairs(input)?;
    serde_urlencoded::from_bytes(input).map_err(|e| FormError::Shape(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent_escapes() {
        let pairs = parse_pairs(b"a=x+y&b=%C3%A9%26&c&").unwrap_or_default();
        assert_eq!(pairs.get("a").map(String::as_str), Some("x y"));
        assert_eq!(pairs.get("b").map(String::as_str), Some("é&"));
        assert_eq!(pairs.get("c").map(String::as_str), Some(""));
    }

    #[test]
    fn refuses_what_it_cannot_read_unambiguously() {
        let cases: [(&[u8], FormError); 7] = [
            (b"a=1&a=2", FormError::Duplicate("a".into())),
            (b"a=%zz", FormError::BadEncoding),
            (b"a=%4", FormError::BadEncoding),
            (b"a=%FF%FE", FormError::BadUtf8),
            (b"a=\xff", FormError::BadUtf8),
            (b"a=x%00y", FormError::ControlCharacter),
            (b"a=x%0Ay", FormError::ControlCharacter),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_pairs(input),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let many: Vec<u8> = (0..65)
            .map(|i| format!("p{i}=1"))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes();
        assert_eq!(parse_pairs(&many), Err(FormError::TooManyParams));
    }

    #[derive(Debug, serde::Deserialize)]
    struct Login {
        username: String,
        #[serde(default)]
        remember: Option<String>,
    }

    #[test]
    fn deserializes_into_structs_and_ignores_unknown_fields() {
        let login: Login = parse_strict(b"username=al&extra=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(login.username, "al");
        assert_eq!(login.remember, None);
        let with_option: Login =
            parse_strict(b"username=a+l&remember=yes").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(with_option.username, "a l");
        assert_eq!(with_option.remember.as_deref(), Some("yes"));
        let missing = parse_strict::<Login>(b"x=1");
        assert!(matches!(missing, Err(FormError::Shape(m)) if m.contains("username")));
        assert_eq!(
            parse_strict::<Login>(b"username=a&username=b").err(),
            Some(FormError::Duplicate("username".into()))
        );
    }
}
