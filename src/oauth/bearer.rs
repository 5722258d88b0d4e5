//! The bearer token of a request to a protected resource (RFC 6750 §2), read the same way
//! by `/userinfo` and the admin API. Pure: the HTTP layer hands over the header's bytes.

/// What an `Authorization` header says about a bearer token (RFC 6750 §2.1).
#[derive(Debug, PartialEq, Eq)]
pub enum AuthorizationHeader<'a> {
    /// The request has no `Authorization` header.
    Absent,
    /// The header is not visible ASCII text (RFC 9110 §5.5), so it cannot be read at all.
    Malformed,
    /// Another scheme, or `Bearer` with no token after it.
    NotBearer,
    /// `Bearer <token>`: the scheme is case-insensitive (RFC 9110 §11.1), the token trimmed.
    Bearer(&'a str),
}

/// Reads an `Authorization` header value (its raw bytes, if the request has one).
pub fn authorization_header(value: Option<&[u8]>) -> AuthorizationHeader<'_> {
    let Some(bytes) = value else {
        return AuthorizationHeader::Absent;
    };
    // Visible ASCII and tab, as `http::HeaderValue::to_str` accepts.
    if !bytes.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
        return AuthorizationHeader::Malformed;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return AuthorizationHeader::Malformed;
    };
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            AuthorizationHeader::Bearer(token.trim())
        }
        _ => AuthorizationHeader::NotBearer,
    }
}

#[cfg(test)]
mod tests {
    use super::{AuthorizationHeader, authorization_header};

    #[test]
    fn reads_the_bearer_scheme_in_any_case_and_trims_the_token() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc ", "Bearer abc\t"] {
            assert_eq!(
                authorization_header(Some(value.as_bytes())),
                AuthorizationHeader::Bearer("abc"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn anything_else_is_not_a_bearer_token() {
        assert_eq!(authorization_header(None), AuthorizationHeader::Absent);
        for value in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearer    ",
            "Bearerabc",
            "Bearer\tabc",
            "",
        ] {
            assert_eq!(
                authorization_header(Some(value.as_bytes())),
                AuthorizationHeader::NotBearer,
                "{value:?}"
            );
        }
        for value in [&b"Bearer \xc3\xa9"[..], b"Bearer a\x7fb", b"Bearer a\nb"] {
            assert_eq!(
                authorization_header(Some(value)),
                AuthorizationHeader::Malformed,
                "{value:?}"
            );
        }
    }
}
