//! A posted sign-in form, parsed once: what the user typed, which form it was, and the
//! browser it came from.

use std::net::IpAddr;

use serde::Deserialize;

use crate::audit::Actor;
use crate::domain::secret::{OpaqueToken, TokenHash, kind};
use crate::domain::user::Password;

/// The fields of `POST /login` as sent. No `Debug`: it holds the password.
#[derive(Deserialize)]
pub struct SignInForm {
    /// The login transaction the form was served for.
    pub tx: String,
    pub csrf_token: String,
    pub username: String,
    pub password: String,
}

/// Who posted the form: the browser's binding cookie and what the request says about it.
#[derive(Debug)]
pub struct Browser<'a> {
    /// The binding cookie the browser sent, or a new value when it sent none.
    pub binding: &'a OpaqueToken<kind::BrowserBinding>,
    /// The browser sent no binding cookie: no form of ours can be bound to it.
    pub binding_is_new: bool,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    pub actor: &'a Actor,
    /// The hash of a session cookie the browser already sent; that session is replaced.
    pub replaces: Option<TokenHash<kind::SessionToken>>,
}

/// A sign-in form with its fields parsed.
#[derive(Debug)]
pub struct SignInRequest<'a> {
    /// `None` when the field is not one of our tokens.
    pub tx: Option<OpaqueToken<kind::LoginTransaction>>,
    pub csrf_token: String,
    /// Trimmed.
    pub username: String,
    /// `None` when the field was empty. Over-long input verifies as the empty password.
    pub password: Option<Password>,
    pub browser: Browser<'a>,
}

impl<'a> SignInRequest<'a> {
    pub fn parse(form: SignInForm, browser: Browser<'a>) -> Self {
        let password = (!form.password.is_empty())
            .then(|| Password::presented(form.password).unwrap_or_else(|_| Password::empty()));
        Self {
            tx: OpaqueToken::parse(&form.tx),
            csrf_token: form.csrf_token,
            username: form.username.trim().to_owned(),
            password,
            browser,
        }
    }
}

/// Both fields filled in: the password to check; otherwise which were left empty.
pub(super) fn filled_in(
    username: &str,
    password: Option<Password>,
) -> Result<Password, MissingFields> {
    match password {
        Some(password) if !username.is_empty() => Ok(password),
        password => Err(MissingFields {
            username: username.is_empty(),
            password: password.is_none(),
        }),
    }
}

/// Which fields of a form were left empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingFields {
    pub username: bool,
    pub password: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        username: &str,
        password: &str,
        actor: &Actor,
        binding: &OpaqueToken<kind::BrowserBinding>,
    ) -> bool {
        let request = SignInRequest::parse(
            SignInForm {
                tx: "not a token".into(),
                csrf_token: String::new(),
                username: username.into(),
                password: password.into(),
            },
            Browser {
                binding,
                binding_is_new: false,
                ip: None,
                user_agent: None,
                actor,
                replaces: None,
            },
        );
        assert!(request.tx.is_none());
        filled_in(&request.username, request.password).is_ok()
    }

    #[test]
    fn blank_fields_are_missing_and_usernames_are_trimmed() {
        let actor = Actor::default();
        let binding = OpaqueToken::generate();
        assert!(parse("alice", "secret", &actor, &binding));
        assert!(!parse("   ", "secret", &actor, &binding));
        assert!(!parse("alice", "", &actor, &binding));
        // A password of spaces is a password.
        assert!(parse(" alice ", " ", &actor, &binding));
    }
}
