//! Opaque high-entropy secrets (browser sessions, login transactions and their browser
//! binding, authorization codes, refresh tokens, client secrets) and the SHA-256 hashes
//! that are all the database ever stores of them. Each secret has a kind (`kind::…`), and
//! a secret and its hash carry it in their type: a hash of one kind can never be looked
//! up as another (a refresh token presented as a session cookie does not even compile):
//!
//! ```compile_fail,E0308
//! use portcullis::domain::secret::{OpaqueToken, TokenHash, kind};
//! let refresh = OpaqueToken::<kind::RefreshToken>::generate();
//! let as_session: TokenHash<kind::SessionToken> = refresh.hash();
//! ```

use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of the base64url form of 32 random bytes.
const ENCODED_LEN: usize = 43;

/// What a secret is for: one uninhabited type per kind, used only as a type parameter.
pub mod kind {
    /// An authorization code (RFC 6749 §4.1.2), single use.
    pub enum AuthorizationCode {}
    /// A refresh token (RFC 6749 §1.5, §6), one of a rotating family.
    pub enum RefreshToken {}
    /// The browser session behind the login cookie.
    pub enum SessionToken {}
    /// A sign-in or consent step in progress (the `tx` of the forms).
    pub enum LoginTransaction {}
    /// The cookie that ties a login transaction to the browser that started it.
    pub enum BrowserBinding {}
    /// A confidential client's secret (RFC 6749 §2.3.1).
    pub enum ClientSecret {}
}

/// A 256-bit random value of kind `K`, shown to a browser or client exactly once.
pub struct OpaqueToken<K>(SecretString, PhantomData<fn() -> K>);

impl<K> OpaqueToken<K> {
    /// 32 bytes from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::new(URL_SAFE_NO_PAD.encode(bytes))
    }

    fn new(value: String) -> Self {
        Self(SecretString::from(value), PhantomData)
    }

    /// Accepts a presented value only if it has the exact shape we issue, so oversized or
    /// malformed input never reaches the database.
    pub fn parse(presented: &str) -> Option<Self> {
        let ok = presented.len() == ENCODED_LEN
            && presented
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self::new(presented.to_owned()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// A second handle on the same secret (deliberately not `Clone`: copies are explicit).
    pub fn duplicate(&self) -> Self {
        Self::new(self.expose().to_owned())
    }

    /// SHA-256: the value has 256 bits of entropy, so a fast hash is enough (no argon2 on
    /// hot paths).
    pub fn hash(&self) -> TokenHash<K> {
        TokenHash(Sha256::digest(self.expose().as_bytes()).into(), PhantomData)
    }

    /// A value derived from this secret for another purpose (e.g. a CSRF token bound to
    /// a session). Knowing the derived value reveals nothing about the secret.
    pub fn derive(&self, purpose: &str, context: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"portcullis/");
        h.update(purpose.as_bytes());
        h.update([0u8]);
        h.update(context.as_bytes());
        h.update([0u8]);
        h.update(self.expose().as_bytes());
        URL_SAFE_NO_PAD.encode(h.finalize())
    }
}

impl<K> std::fmt::Debug for OpaqueToken<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpaqueToken(..)")
    }
}

/// SHA-256 of an opaque token of kind `K`: what the database stores and looks up.
pub struct TokenHash<K>([u8; 32], PhantomData<fn() -> K>);

impl<K> TokenHash<K> {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A stored hash read back (storage knows which kind its column holds).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(|b| Self(b, PhantomData))
    }
}

// By hand: derives would demand `K: Clone` etc. of the uninhabited kind types.
impl<K> Clone for TokenHash<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for TokenHash<K> {}

impl<K> PartialEq for TokenHash<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K> Eq for TokenHash<K> {}

impl<K> std::fmt::Debug for TokenHash<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// SECURITY: constant-time comparison for anything secret-derived (CSRF tokens).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_and_parse_back() {
        let a = OpaqueToken::<kind::SessionToken>::generate();
        let b = OpaqueToken::<kind::SessionToken>::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), ENCODED_LEN);
        let parsed = OpaqueToken::parse(a.expose()).map(|t| t.hash());
        assert_eq!(parsed, Some(a.hash()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", "a".repeat(42)),
            &"é".repeat(22),
        ] {
            assert!(
                OpaqueToken::<kind::RefreshToken>::parse(bad).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = OpaqueToken::<kind::ClientSecret>::generate();
        assert!(!format!("{t:?}").contains(t.expose()));
    }

    #[test]
    fn derived_values_depend_on_purpose_and_context() {
        let t = OpaqueToken::<kind::LoginTransaction>::generate();
        assert_ne!(t.derive("csrf", "a"), t.derive("csrf", "b"));
        assert_ne!(t.derive("csrf", "a"), t.derive("other", "a"));
        assert_eq!(t.derive("csrf", "a"), t.derive("csrf", "a"));
    }

    #[test]
    fn constant_time_eq_compares_values() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
