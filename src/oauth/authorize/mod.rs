//! The authorization endpoint (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2). Requests are
//! validated in the order the specs require (`validate.rs`, one rule a function in
//! `rules.rs`): until the client and its redirect URI are established nothing is ever
//! redirected (RFC 6749 §4.1.2.1); after that, every error goes back to the client with
//! `state` and `iss` (RFC 9207, `reply.rs`). A request that needs sign-in or consent waits
//! server-side in a login transaction (`pending.rs`); `flow.rs` decides between sign-in,
//! consent and a code.

mod flow;
mod pending;
mod reply;
mod request;
mod rules;
mod validate;

use std::collections::HashMap;

pub use pending::Pending;
pub use reply::{AuthorizeOutcome, ClientReply};
pub use request::{AuthorizationRequest, ResponseMode};

use super::Provider;
use super::error::EndpointError;
use crate::audit::Actor;
use crate::auth::CurrentSession;
use crate::domain::secret::{OpaqueToken, kind};

/// Where sign-in returns to for a pending authorization.
pub const RESUME_PATH: &str = "/authorize/resume";

impl Provider {
    /// `GET`/`POST /authorize`.
    pub async fn authorize(
        &self,
        params: &HashMap<String, String>,
        session: Option<&CurrentSession>,
        binding: &OpaqueToken<kind::BrowserBinding>,
        actor: &Actor,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        let (client, request) = match self.validate(params).await? {
            Ok(valid) => valid,
            Err(outcome) => return Ok(outcome),
        };
        self.proceed(&client, request, session, None, binding, actor)
            .await
    }

    /// After sign-in: continue the pending authorization `tx`.
    pub async fn resume(
        &self,
        tx: &OpaqueToken<kind::LoginTransaction>,
        session: Option<&CurrentSession>,
        binding: &OpaqueToken<kind::BrowserBinding>,
        actor: &Actor,
    ) -> Result<AuthorizeOutcome, EndpointError> {
        let Some(pending) = self.pending(tx, binding).await? else {
            return Ok(AuthorizeOutcome::Refused(
                "This sign-in request has expired or was already answered. Please return to \
                 the application and start again."
                    .into(),
            ));
        };
        let Pending {
            tx,
            transaction,
            request,
            client,
        } = pending;
        self.proceed(
            &client,
            request,
            session,
            Some((tx, transaction)),
            binding,
            actor,
        )
        .await
    }
}
