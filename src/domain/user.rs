//! Users: identifiers, account names and the password rules.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Longest account name accepted anywhere (also bounds throttle keys).
pub const MAX_USERNAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("a username is required")]
    Empty,
    #[error("a username has at most {MAX_USERNAME_LEN} characters")]
    TooLong,
    #[error("a username may contain only letters, digits and . _ - @ +")]
    BadCharacter,
}

/// An account name in canonical form: NFKC-normalised and lower-cased, so `Alice` and
/// `alice` are one account (the unique index is on this form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        let folded: String = raw.trim().nfkc().flat_map(char::to_lowercase).collect();
        if folded.is_empty() {
            return Err(UsernameError::Empty);
        }
        if folded.chars().count() > MAX_USERNAME_LEN {
            return Err(UsernameError::TooLong);
        }
        let allowed = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+');
        if !folded.chars().all(allowed) {
            return Err(UsernameError::BadCharacter);
        }
        Ok(Self(folded))
    }

    /// For values read back from the database, which only ever holds parsed names.
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest password accepted: argon2 handles long input, but unbounded input is a DoS lever.
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must have at least {0} characters")]
    TooShort(usize),
    #[error("the password must have at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
}

/// A plaintext password in flight: never serialized, redacted in `Debug`.
pub struct Password(SecretString);

impl Password {
    /// A presented password (sign-in): only the upper bound applies.
    pub fn presented(raw: String) -> Result<Self, PasswordError> {
        if raw.len() > MAX_PASSWORD_LEN {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(SecretString::from(raw)))
    }

    /// A new password: NIST SP 800-63B §5.1.1.2 length rules, no composition rules.
    pub fn new_password(raw: String, min_len: usize) -> Result<Self, PasswordError> {
        if raw.chars().count() < min_len {
            return Err(PasswordError::TooShort(min_len));
        }
        Self::presented(raw)
    }

    /// The empty password, verified in place of an unusable one so timing stays the same.
    pub fn empty() -> Self {
        Self(SecretString::from(String::new()))
    }

    /// A second copy, e.g. to rehash after a successful verification.
    pub fn duplicate(&self) -> Self {
        Self(SecretString::from(self.expose().to_owned()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// An argon2id PHC string.
#[derive(Clone)]
pub struct PasswordHash(pub String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl User {
    pub fn display_name(&self) -> &str {
        self.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(self.username.as_str())
    }
}

/// What `users create` and the admin API ask for.
#[derive(Debug)]
pub struct NewUser {
    pub username: Username,
    pub email: Option<String>,
    pub name: Option<String>,
    pub password_hash: Option<PasswordHash>,
}

/// The profile fields an administrator may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Longest email address (RFC 5321 §4.5.3.1.3 path limit) and display name accepted.
pub const MAX_EMAIL_LEN: usize = 254;
pub const MAX_NAME_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "expected an email address like alice@example.com (at most {MAX_EMAIL_LEN} characters)"
    )]
    BadEmail,
    #[error("a name has at most {MAX_NAME_LEN} characters and no control characters")]
    BadName,
    #[error("a user without an email address cannot have a verified one")]
    NoEmailToVerify,
}

/// A trimmed email address with one `@` between non-empty parts; `None` for an empty one.
/// Deliverability is not checked here (that is what `email_verified` records).
pub fn parse_email(raw: &str) -> Result<Option<String>, ProfileError> {
    let email = raw.trim();
    if email.is_empty() {
        return Ok(None);
    }
    let ok = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_control() || c.is_whitespace())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    ok.then(|| Some(email.to_owned()))
        .ok_or(ProfileError::BadEmail)
}

/// A trimmed display name; `None` for an empty one.
pub fn parse_name(raw: &str) -> Result<Option<String>, ProfileError> {
    let name = raw.trim();
    if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ProfileError::BadName);
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_case_folded_and_normalised() {
        let parse = |s| Username::parse(s).map(|u| u.as_str().to_owned());
        assert_eq!(parse("  Alice "), Ok("alice".into()));
        assert_eq!(parse("ALICE@Example.COM"), Ok("alice@example.com".into()));
        // NFKC folds the full-width form into plain ASCII.
        assert_eq!(parse("ＡＬＩＣＥ"), Ok("alice".into()));
        assert_eq!(parse("Zoë"), Ok("zoë".into()));
    }

    #[test]
    fn bad_usernames_are_refused() {
        assert_eq!(Username::parse("   "), Err(UsernameError::Empty));
        assert_eq!(
            Username::parse(&"a".repeat(65)),
            Err(UsernameError::TooLong)
        );
        for bad in ["a b", "a/b", "<script>", "a\u{0}b", "a;b"] {
            assert_eq!(
                Username::parse(bad),
                Err(UsernameError::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn password_length_rules() {
        assert!(Password::new_password("short".into(), 8).is_err());
        assert!(Password::new_password("long enough".into(), 8).is_ok());
        assert_eq!(
            Password::presented("x".repeat(1025)).err(),
            Some(PasswordError::TooLong)
        );
        let p = Password::presented("hunter2hunter2".into()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn emails_and_names_are_checked_and_trimmed() {
        assert_eq!(parse_email(" a@b.example "), Ok(Some("a@b.example".into())));
        assert_eq!(parse_email(""), Ok(None));
        for bad in [
            "nobody",
            "@b",
            "a@",
            "a@b@c",
            "a b@c",
            &format!("{}@b", "a".repeat(260)),
        ] {
            assert_eq!(parse_email(bad), Err(ProfileError::BadEmail), "{bad}");
        }
        assert_eq!(parse_name("  Alice  "), Ok(Some("Alice".into())));
        assert_eq!(parse_name(" "), Ok(None));
        assert_eq!(parse_name("a\u{0}b"), Err(ProfileError::BadName));
        assert_eq!(parse_name(&"x".repeat(201)), Err(ProfileError::BadName));
    }
}
