//! What the authorization endpoint answers: a page that refuses (the client or redirect
//! URI is not trusted), a reply delivered to the client's redirect URI, or a detour through
//! sign-in or consent.

use super::request::{AuthorizationRequest, ResponseMode};
use crate::domain::redirect_uri::RedirectUri;
use crate::domain::secret::{OpaqueToken, kind};
use crate::oauth::Provider;
use crate::oauth::error::OAuthError;

#[derive(Debug)]
pub enum AuthorizeOutcome {
    /// The client or redirect URI cannot be trusted: show this message, never redirect.
    Refused(String),
    Reply(ClientReply),
    Login {
        tx: OpaqueToken<kind::LoginTransaction>,
    },
    Consent {
        tx: OpaqueToken<kind::LoginTransaction>,
    },
}

/// An answer for the client: its redirect URI and the parameters to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReply {
    pub redirect_uri: RedirectUri,
    pub mode: ResponseMode,
    pub params: Vec<(String, String)>,
}

impl ClientReply {
    /// The redirect URI with the parameters added to its query (query response mode).
    pub fn location(&self) -> String {
        let mut url = self.redirect_uri.url().clone();
        url.query_pairs_mut().extend_pairs(&self.params);
        url.to_string()
    }

    /// The CSP `form-action` source that lets a form on our pages end at this client.
    pub fn form_action_source(&self) -> Option<String> {
        Some(self.redirect_uri.form_action_source())
    }
}

impl Provider {
    /// An error for the client, with `state` and `iss` (RFC 6749 §4.1.2.1, RFC 9207 §2).
    pub fn error_reply(&self, request: &AuthorizationRequest, error: OAuthError) -> ClientReply {
        let params = vec![
            ("error".to_owned(), error.code.as_str().to_owned()),
            ("error_description".to_owned(), error.description),
        ];
        self.client_reply(request, params)
    }

    /// A successful response carrying `code` (RFC 6749 §4.1.2), with `state` and `iss`.
    pub(super) fn code_reply(&self, request: &AuthorizationRequest, code: &str) -> ClientReply {
        self.client_reply(request, vec![("code".to_owned(), code.to_owned())])
    }

    /// `params`, then the request's `state` and our `iss`, for the request's redirect URI.
    fn client_reply(
        &self,
        request: &AuthorizationRequest,
        mut params: Vec<(String, String)>,
    ) -> ClientReply {
        if let Some(state) = &request.state {
            params.push(("state".into(), state.clone()));
        }
        params.push(("iss".into(), self.issuer.clone()));
        ClientReply {
            redirect_uri: request.redirect_uri.clone(),
            mode: request.response_mode,
            params,
        }
    }
}

/// The refusal for a transaction someone already answered (another tab, a replay).
pub(super) fn already_answered() -> AuthorizeOutcome {
    AuthorizeOutcome::Refused(
        "This sign-in request was already answered. Please return to the application.".into(),
    )
}
