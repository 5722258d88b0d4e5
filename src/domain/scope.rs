//! Scopes (RFC 6749 §3.3): a space-delimited, order-independent set of scope tokens.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Longest scope string accepted in a request.
pub const MAX_SCOPE_LEN: usize = 1024;

/// The scope of the admin API (`/admin/v1`). Only ever granted to a confidential client
/// through `client_credentials`, never to a user through `/authorize`.
pub const ADMIN_SCOPE: &str = "portcullis:admin";

/// Scopes that are about a signed-in user (OpenID Connect Core §5.4, §11): meaningless in
/// a token a client obtains for itself.
pub const USER_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

pub fn is_user_scope(scope: &str) -> bool {
    USER_SCOPES.contains(&scope)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("the scope `{0}` contains characters RFC 6749 §3.3 does not allow")]
    BadToken(String),
    #[error("the scope parameter is too long")]
    TooLong,
}

/// A set of scope tokens; serializes as the space-delimited string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    /// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, separated by spaces.
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        if raw.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong);
        }
        let mut set = BTreeSet::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            let ok = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !ok {
                return Err(ScopeError::BadToken(token.to_owned()));
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    pub fn from_tokens<I: IntoIterator<Item = S>, S: Into<String>>(tokens: I) -> Self {
        Self(tokens.into_iter().map(Into::into).collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.union(&other.0).cloned().collect())
    }

    /// The scopes of `self` that `other` lacks.
    /// This set without `scope`.
    pub fn without(&self, scope: &str) -> ScopeSet {
        Self(self.0.iter().filter(|s| *s != scope).cloned().collect())
    }

    pub fn missing_from(&self, other: &ScopeSet) -> Vec<String> {
        self.0.difference(&other.0).cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let joined: Vec<&str> = self.iter().collect();
        f.write_str(&joined.join(" "))
    }
}

impl TryFrom<String> for ScopeSet {
    type Error = ScopeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ScopeSet> for String {
    fn from(s: ScopeSet) -> Self {
        s.to_string()
    }
}

/// What a scope lets a client see, in plain words for the consent page.
pub fn describe(scope: &str) -> String {
    match scope {
        "openid" => "Confirm who you are (your account identifier)".into(),
        "profile" => "See your name and username".into(),
        "email" => "See your email address".into(),
        "offline_access" => "Stay signed in and act for you when you are not using it".into(),
        ADMIN_SCOPE => "Administer this identity provider".into(),
        other => format!("Access “{other}”"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_repeats_do_not_matter() {
        let a = ScopeSet::parse("openid email  profile").unwrap_or_default();
        let b = ScopeSet::parse("profile openid email openid").unwrap_or_default();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "email openid profile");
    }

    #[test]
    fn invalid_characters_are_refused() {
        assert!(matches!(
            ScopeSet::parse("open\"id"),
            Err(ScopeError::BadToken(_))
        ));
        assert!(matches!(
            ScopeSet::parse("a\\b"),
            Err(ScopeError::BadToken(_))
        ));
        assert!(matches!(ScopeSet::parse("é"), Err(ScopeError::BadToken(_))));
        assert_eq!(ScopeSet::parse(&"a".repeat(2000)), Err(ScopeError::TooLong));
    }

    #[test]
    fn subsets_and_differences() {
        let allowed = ScopeSet::parse("openid profile email").unwrap_or_default();
        let asked = ScopeSet::parse("openid admin").unwrap_or_default();
        assert!(!asked.is_subset(&allowed));
        assert_eq!(asked.missing_from(&allowed), vec!["admin".to_owned()]);
    }
}
