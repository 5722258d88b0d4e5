//! OpenID Connect RP-Initiated Logout 1.0: the rules of the `end_session_endpoint`.
//! Which `id_token_hint` is ours, which client a request comes from, whether its
//! `post_logout_redirect_uri` may be followed, and when the user must be asked first.
//! Nothing here ever redirects to a target that is not registered for the client the
//! request was proven to come from.

use serde::{Deserialize, Serialize};

use super::Provider;
use super::error::EndpointError;
use crate::audit::Actor;
use crate::auth::CurrentSession;
use crate::domain::client::{Client, ClientId};
use crate::domain::redirect_uri::RedirectUri;
use crate::keys::Expectations;

/// Longest `state` accepted (as at the authorization endpoint).
const MAX_STATE_LEN: usize = 2048;

/// The parameters of a logout request (RP-Initiated Logout 1.0 §2), as sent. `logout_hint`
/// and `ui_locales` are OPTIONAL hints we do not act on; like any unknown parameter they
/// are accepted and ignored (only a repeated one is refused, by the strict extractors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_logout_redirect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl LogoutParams {
    /// RFC 6749 §3.1 (which OpenID Connect follows): a parameter sent without a value is
    /// treated as omitted.
    fn normalized(self) -> Self {
        let present = |v: Option<String>| v.filter(|v| !v.is_empty());
        Self {
            id_token_hint: present(self.id_token_hint),
            client_id: present(self.client_id),
            post_logout_redirect_uri: present(self.post_logout_redirect_uri),
            state: present(self.state),
        }
    }

    /// No logout parameter at all (e.g. the account page's own sign-out button).
    pub fn is_empty(&self) -> bool {
        self.clone().normalized() == Self::default()
    }
}

/// What a verified `id_token_hint` says: whose session, with which client.
#[derive(Debug, Clone, Deserialize)]
pub struct HintClaims {
    pub sub: String,
    /// The client the ID token was issued to (ours always carry a single audience).
    pub aud: String,
    #[serde(default)]
    pub sid: Option<String>,
}

/// A logout request that passed validation.
#[derive(Debug)]
pub struct LogoutRequest {
    /// The parameters as received (empty ones dropped): echoed into the confirmation
    /// form, and validated again from scratch when that form is posted.
    pub params: LogoutParams,
    /// The client identified by `client_id` or by the hint's `aud`.
    pub client: Option<Client>,
    pub hint: Option<HintClaims>,
    /// `post_logout_redirect_uri`, registered for `client`.
    pub redirect_uri: Option<RedirectUri>,
}

impl LogoutRequest {
    /// §2: the request belongs to the current session when the hint names this very
    /// session (`sid`) and its user (`sub`). Only then may the OP skip asking the user.
    pub fn belongs_to(&self, session: &CurrentSession) -> bool {
        self.hint.as_ref().is_some_and(|hint| {
            hint.sid.as_deref() == Some(session.session.id.to_string().as_str())
                && hint.sub == session.user.id.to_string()
        })
    }

    /// The post-logout redirect with `state` added to its query (§3), when there is a
    /// validated target.
    pub fn location(&self) -> Option<String> {
        let uri = self.redirect_uri.as_ref()?;
        let Some(state) = self.params.state.as_deref() else {
            return Some(uri.to_string());
        };
        let mut url = uri.url().clone();
        url.query_pairs_mut().append_pair("state", state);
        Some(url.to_string())
    }

    /// The CSP `form-action` source a confirmation form needs when its redirect chain
    /// ends at the client (Chromium applies form-action to every hop).
    pub fn form_action_source(&self) -> Option<String> {
        self.redirect_uri
            .as_ref()
            .map(RedirectUri::form_action_source)
    }

    pub fn client_name(&self) -> Option<&str> {
        self.client.as_ref().map(|c| c.name.as_str())
    }
}

/// What to do with a logout request.
#[derive(Debug)]
pub enum LogoutOutcome {
    /// The request cannot be trusted: show this message, never redirect.
    Refused(String),
    /// Ask the user before ending their session (§2).
    Confirm(LogoutRequest),
    /// The session ended (`ended`), or there was none to end. Redirect to the request's
    /// `location()` when `redirect`, otherwise show the signed-out page.
    SignedOut {
        request: LogoutRequest,
        ended: bool,
        redirect: bool,
    },
}

/// Why a logout request is refused: a message to show, never a redirect.
type Refusal = &'static str;

/// Where a logout request stands: just arrived, or confirmed by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Request,
    Confirmed,
}

impl Provider {
    /// `GET /logout` (a POST arrives here as a GET, see the handler).
    pub async fn end_session_request(
        &self,
        params: LogoutParams,
        session: Option<&CurrentSession>,
        actor: &Actor,
    ) -> Result<LogoutOutcome, EndpointError> {
        self.logout(params, session, Step::Request, actor).await
    }

    /// `POST /logout/confirm`: the user said yes (the caller checked the origin and the
    /// CSRF token bound to `session`). The parameters are validated again, so a target the
    /// form carries is followed only if it is still registered for the client.
    pub async fn confirm_logout(
        &self,
        params: LogoutParams,
        session: Option<&CurrentSession>,
        actor: &Actor,
    ) -> Result<LogoutOutcome, EndpointError> {
        self.logout(params, session, Step::Confirmed, actor).await
    }

    async fn logout(
        &self,
        params: LogoutParams,
        session: Option<&CurrentSession>,
        step: Step,
        actor: &Actor,
    ) -> Result<LogoutOutcome, EndpointError> {
        let request = match self.validate_logout(params).await? {
            Ok(request) => request,
            Err(message) => return Ok(LogoutOutcome::Refused(message)),
        };
        let Some(session) = session else {
            return Ok(nothing_to_end(request));
        };
        let via = match step {
            // §2: an ID token of the current session is the RP's proof that the user
            // signed in there; log out at once. §3: the registered target may follow.
            Step::Request if request.belongs_to(session) => "id_token_hint",
            // §2: "the OP MUST ask the End-User this question if an id_token_hint was not
            // provided or if the supplied ID Token does not belong to the current OP
            // session with the RP and/or currently logged in End-User."
            Step::Request => return Ok(LogoutOutcome::Confirm(request)),
            Step::Confirmed if request.params.is_empty() => "account",
            // §3: without a hint the OP "MUST NOT perform post-logout redirection unless
            // the OP has other means of confirming the legitimacy of the post-logout
            // redirection target". Here the target is registered (exactly) for the client
            // named by `client_id`, and the signed-in user chose to follow it by confirming.
            Step::Confirmed => "confirmation",
        };
        let ended = self.end_session(session, &request, via, actor).await?;
        let redirect = request.redirect_uri.is_some();
        Ok(LogoutOutcome::SignedOut {
            request,
            ended,
            redirect,
        })
    }

    /// Ends the browser session; its audit row names the client when one is known. The
    /// store revokes whatever else dies with the session in the same transaction.
    async fn end_session(
        &self,
        session: &CurrentSession,
        request: &LogoutRequest,
        via: &'static str,
        actor: &Actor,
    ) -> Result<bool, EndpointError> {
        let client = request.client.as_ref().map(|c| &c.id);
        Ok(self.auth.logout(session, client, via, actor).await?)
    }

    /// Validates the parameters, one rule a function in the order below; `Err(message)`
    /// is a refusal to show (never a redirect).
    pub async fn validate_logout(
        &self,
        params: LogoutParams,
    ) -> Result<Result<LogoutRequest, String>, EndpointError> {
        let params = params.normalized();
        let refuse = |m: Refusal| Ok(Err(m.to_owned()));
        if let Err(refusal) = well_formed_state(params.state.as_deref()) {
            return refuse(refusal);
        }
        let hint = match self.verified_hint(params.id_token_hint.as_deref()) {
            Ok(hint) => hint,
            Err(refusal) => return refuse(refusal),
        };
        let client_id = match requesting_client_id(params.client_id.as_deref(), hint.as_ref()) {
            Ok(client_id) => client_id,
            Err(refusal) => return refuse(refusal),
        };
        let client = match self
            .registered_client(client_id, params.client_id.is_some())
            .await?
        {
            Ok(client) => client,
            Err(refusal) => return refuse(refusal),
        };
        let redirect_uri = match registered_redirect_uri(
            params.post_logout_redirect_uri.as_deref(),
            client.as_ref(),
        ) {
            Ok(redirect_uri) => redirect_uri,
            Err(refusal) => return refuse(refusal),
        };
        Ok(Ok(LogoutRequest {
            params,
            client,
            hint,
            redirect_uri,
        }))
    }

    /// §2 id_token_hint: "an ID Token previously issued by the OP". Our signature (the
    /// key decides the algorithm, so `alg: none` and foreign keys fail), our issuer and
    /// the ID token type are required; expiry is not: "the OP SHOULD accept ID Tokens
    /// when the RP identified by the ID Token's aud claim and/or sid claim has a current
    /// session or had a recent session at the OP, even when the exp time has passed".
    fn verified_hint(&self, token: Option<&str>) -> Result<Option<HintClaims>, Refusal> {
        let Some(token) = token else {
            return Ok(None);
        };
        let verified: Result<HintClaims, _> = self.keys.verify(
            token,
            &Expectations {
                typ: "JWT",
                issuer: &self.issuer,
                audience: None,
                allow_expired: true,
            },
        );
        match verified {
            Ok(claims) => Ok(Some(claims)),
            // A hint signed by a key that has since been rotated out (sessions outlive
            // retired keys) is treated as absent: the user is asked, and nothing is
            // redirected without that (§2: the OP SHOULD accept such hints; it cannot
            // verify this one, so it does not rely on it).
            Err(crate::keys::KeyError::Invalid("unknown key")) => Ok(None),
            Err(_) => Err(
                "This sign-out request carries an ID token that was not issued by this \
                 provider, so it cannot be trusted.",
            ),
        }
    }

    /// §2 client_id: the client the request names, or its hint's audience. When
    /// `client_id` was sent it must be registered; a disabled client does not count.
    async fn registered_client(
        &self,
        client_id: Option<&str>,
        named: bool,
    ) -> Result<Result<Option<Client>, Refusal>, EndpointError> {
        let client = match client_id.map(ClientId::parse) {
            // SECURITY: a disabled client is suspended (perhaps compromised): it is no
            // longer a place to send users, so it is treated as unregistered.
            Some(Ok(id)) => self.store.find_client(&id).await?.filter(|c| !c.disabled),
            Some(Err(_)) | None => None,
        };
        if named && client.is_none() {
            return Ok(Err(
                "The application that sent you here is not registered with this provider.",
            ));
        }
        Ok(Ok(client))
    }
}

/// RFC 6749 Appendix A.5: `state` is VSCHAR (%x20-7E); bounded like at /authorize.
fn well_formed_state(state: Option<&str>) -> Result<(), Refusal> {
    if state
        .is_some_and(|s| s.len() > MAX_STATE_LEN || !s.bytes().all(|b| (0x20..=0x7e).contains(&b)))
    {
        return Err("The state parameter of this sign-out request is malformed.");
    }
    Ok(())
}

/// §2 client_id: "When both client_id and id_token_hint are present, the OP MUST verify
/// that the Client Identifier matches the one used when issuing the ID Token." Without
/// `client_id`, the hint's `aud` names the client.
fn requesting_client_id<'a>(
    client_id: Option<&'a str>,
    hint: Option<&'a HintClaims>,
) -> Result<Option<&'a str>, Refusal> {
    match (client_id, hint) {
        (Some(id), Some(hint)) if id != hint.aud => Err(
            "The application named in this sign-out request is not the one its ID token was \
             issued to.",
        ),
        (Some(id), _) => Ok(Some(id)),
        (None, Some(hint)) => Ok(Some(hint.aud.as_str())),
        (None, None) => Ok(None),
    }
}

/// §3: "The OP also MUST NOT perform post-logout redirection if the
/// post_logout_redirect_uri value supplied does not exactly match one of the previously
/// registered post_logout_redirect_uris values." Matching needs the client, so a target
/// without client_id or id_token_hint is refused outright.
fn registered_redirect_uri(
    uri: Option<&str>,
    client: Option<&Client>,
) -> Result<Option<RedirectUri>, Refusal> {
    let Some(uri) = uri else {
        return Ok(None);
    };
    let Some(client) = client else {
        return Err(
            "This sign-out request names a page to return to but not the application it \
             belongs to, so you are not sent there.",
        );
    };
    let unregistered = "The post_logout_redirect_uri of this request is not registered for \
                        the application, so you are not sent there.";
    if !client.post_logout_redirect_uri_matches(uri) {
        return Err(unregistered);
    }
    // A registered URI always parses.
    RedirectUri::parse(uri).map(Some).map_err(|_| unregistered)
}

/// No session in this browser: there is nothing to end and nothing to ask (§2's question
/// is whether to end the OP session). A valid hint vouches for the registered target
/// (§3), so the browser goes back at once; without one it is not redirected, and the
/// signed-out page only links to the target.
fn nothing_to_end(request: LogoutRequest) -> LogoutOutcome {
    let redirect = request.hint.is_some() && request.redirect_uri.is_some();
    LogoutOutcome::SignedOut {
        request,
        ended: false,
        redirect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_parameters_count_as_omitted() {
        let params = LogoutParams {
            id_token_hint: Some(String::new()),
            client_id: Some(String::new()),
            post_logout_redirect_uri: None,
            state: Some(String::new()),
        };
        assert!(params.is_empty());
        let with_state = LogoutParams {
            state: Some("s".into()),
            ..LogoutParams::default()
        };
        assert!(!with_state.is_empty());
    }

    #[test]
    fn state_is_appended_to_the_registered_target() {
        let request = |uri: &str, state: Option<&str>| LogoutRequest {
            params: LogoutParams {
                state: state.map(str::to_owned),
                ..LogoutParams::default()
            },
            client: None,
            hint: None,
            redirect_uri: RedirectUri::parse(uri).ok(),
        };
        assert_eq!(
            request("https://rp.example/bye", Some("a b&c"))
                .location()
                .as_deref(),
            Some("https://rp.example/bye?state=a+b%26c")
        );
        assert_eq!(
            request("https://rp.example/bye?tenant=1", Some("x"))
                .location()
                .as_deref(),
            Some("https://rp.example/bye?tenant=1&state=x")
        );
        assert_eq!(
            request("https://rp.example/bye", None)
                .location()
                .as_deref(),
            Some("https://rp.example/bye")
        );
        let none = LogoutRequest {
            redirect_uri: None,
            ..request("https://rp.example/bye", Some("x"))
        };
        assert_eq!(none.location(), None);
    }
}
