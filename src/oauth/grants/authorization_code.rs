//! The `authorization_code` grant (RFC 6749 §4.1.3) with PKCE (RFC 7636 §4.6) and the
//! ID token (OpenID Connect Core §3.1.3.3).
//!
//! The rules, in order: the request's parameters (`code`, `redirect_uri`, and the
//! `code_verifier` a PKCE client must send), the binding the code must match
//! (`code_binding`), which storage enforces with "unused and unexpired" in one conditional
//! statement, then the code's user, and the tokens.

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use super::Mint;
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::{Client, GrantType};
use crate::domain::pkce::{CodeChallenge, challenge_for_verifier};
use crate::domain::refresh::{FamilyId, outlives_session};
use crate::domain::secret::{OpaqueToken, kind};
use crate::oauth::Provider;
use crate::oauth::error::{EndpointError, OAuthError};
use crate::oauth::token::{Issued, TokenResponse};
use crate::storage::{
    AuthorizationCodeRecord, CodeBinding, CodeRedemption, NewRefreshFamily, Redemption,
};

/// The parameters of an access token request with a code (RFC 6749 §4.1.3).
struct CodeRequest<'a> {
    code: OpaqueToken<kind::AuthorizationCode>,
    redirect_uri: &'a str,
    /// The challenge of the presented `code_verifier` (RFC 7636 §4.6); none without one.
    challenge: Option<CodeChallenge>,
}

/// The refusal of every code that does not match: the client cannot tell which part of
/// the binding failed.
fn invalid_code() -> OAuthError {
    OAuthError::invalid_grant(
        "the code is invalid or expired, or was issued for another client, \
         redirect_uri or code_verifier",
    )
}

impl CodeRequest<'_> {
    /// RFC 6749 §4.1.3: `code` and `redirect_uri` are required (every authorization
    /// request of ours carries a redirect_uri); RFC 7636 §4.5: the `code_verifier`.
    fn parse<'p>(
        client: &Client,
        params: &'p HashMap<String, String>,
    ) -> Result<CodeRequest<'p>, OAuthError> {
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let code = get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        let redirect_uri = get("redirect_uri")
            .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
        let challenge = presented_challenge(client, get("code_verifier"))?;
        let code = OpaqueToken::parse(code).ok_or_else(invalid_code)?;
        Ok(CodeRequest {
            code,
            redirect_uri,
            challenge,
        })
    }
}

/// RFC 7636 §4.5–4.6: the challenge the presented verifier stands for. A client
/// registered without PKCE may leave the verifier out; the stored challenge decides then:
/// a code issued with one is not redeemed without it (RFC 9700 §4.8.2, PKCE downgrade:
/// and one issued without a challenge is never redeemed with a verifier).
fn presented_challenge(
    client: &Client,
    verifier: Option<&str>,
) -> Result<Option<CodeChallenge>, OAuthError> {
    match verifier {
        Some(v) => challenge_for_verifier(v)
            .map(Some)
            .map_err(|_| invalid_code()),
        None if !client.pkce_required() => Ok(None),
        None => Err(OAuthError::invalid_request(
            "code_verifier is required (PKCE)",
        )),
    }
}

/// What the code must be bound to, enforced by storage atomically with "unused and
/// unexpired": RFC 6749 §4.1.3 (issued to this client, with this `redirect_uri`, which
/// must be identical to the authorization request's) and RFC 7636 §4.6 (issued for the
/// challenge the presented `code_verifier` stands for, or without one when none is
/// presented).
fn code_binding<'a>(client: &'a Client, request: &'a CodeRequest<'_>) -> CodeBinding<'a> {
    CodeBinding {
        client_id: &client.id,
        redirect_uri: request.redirect_uri,
        code_challenge: request.challenge.as_ref(),
    }
}

/// RFC 6749 §4.1.2: a code presented again is refused, and the tokens issued for it have
/// been revoked by storage in the same transaction.
fn redeemed(redemption: Redemption) -> Result<Box<AuthorizationCodeRecord>, OAuthError> {
    match redemption {
        Redemption::Redeemed(record) => Ok(record),
        Redemption::Reused => Err(OAuthError::invalid_grant(
            "the code was already used; the tokens issued for it are revoked",
        )),
        Redemption::Invalid => Err(invalid_code()),
    }
}

impl Provider {
    pub(crate) async fn authorization_code_grant(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        actor: &Actor,
    ) -> Result<Issued, EndpointError> {
        let request = CodeRequest::parse(client, params)?;
        let now = self.clock.now();
        let jti = Uuid::new_v4();
        let expires_at = now + self.access_token_lifetime;
        let refresh = self.first_refresh_token(client, now);
        let family = refresh.as_ref().map(|(_, family)| family);
        let (issued, reused) = redemption_audit(client, actor, now, jti, family);
        let redemption = self
            .store
            .redeem_code(
                &CodeRedemption {
                    code_hash: request.code.hash(),
                    binding: code_binding(client, &request),
                    access_token_jti: jti,
                    access_token_expires_at: expires_at,
                    refresh: family.cloned(),
                    audit_issued: &issued,
                    audit_reused: &reused,
                },
                now,
            )
            .await?;
        let record = redeemed(redemption)?;
        let user = self.active_user(record.user_id).await?;
        let (access_token, id_token) = self.mint(&Mint {
            client,
            user: &user,
            scope: &record.scope,
            session: Some(record.session_id),
            auth_time: record.auth_time,
            amr: &record.amr,
            nonce: record.nonce.clone(),
            claims: &record.claims,
            jti,
            now,
        })?;
        Ok(Issued {
            response: TokenResponse {
                access_token,
                token_type: "Bearer".to_owned(),
                expires_in: self.access_token_lifetime.whole_seconds(),
                scope: record.scope.to_string(),
                refresh_token: refresh.as_ref().map(|(t, _)| t.expose().to_owned()),
                id_token,
            },
            client_id: client.id.clone(),
            delivery: client.refresh_token_delivery,
            refresh_expires_at: refresh.map(|(_, family)| family.absolute_expires_at),
        })
    }

    /// RFC 6749 §1.5: a refresh token for clients allowed the grant, the first of a new
    /// family. Whether the family outlives the browser session is the rule of OpenID
    /// Connect Core §11 (`outlives_session`), which storage applies to the code's scope
    /// once it has consumed the code.
    fn first_refresh_token(
        &self,
        client: &Client,
        now: OffsetDateTime,
    ) -> Option<(OpaqueToken<kind::RefreshToken>, NewRefreshFamily)> {
        client.allows_grant(GrantType::RefreshToken).then(|| {
            let token = OpaqueToken::generate();
            let (idle_expires_at, absolute_expires_at) = self.refresh.new_family(client.kind, now);
            let family = NewRefreshFamily {
                family_id: FamilyId::new(),
                token_hash: token.hash(),
                idle_expires_at,
                absolute_expires_at,
                outlives_session,
            };
            (token, family)
        })
    }
}

/// The audit rows of a redemption: one for the tokens issued, one for a reused code.
fn redemption_audit(
    client: &Client,
    actor: &Actor,
    now: OffsetDateTime,
    jti: Uuid,
    family: Option<&NewRefreshFamily>,
) -> (AuditEvent, AuditEvent) {
    let mut issued = AuditEvent::new(now, AuditKind::TokenIssued, Outcome::Success, actor)
        .client(client.id.as_str())
        .detail("grant_type", "authorization_code")
        .detail("jti", jti.to_string());
    if let Some(family) = family {
        issued = issued.detail("family", family.family_id.to_string());
    }
    let reused = AuditEvent::new(now, AuditKind::CodeReused, Outcome::Failure, actor)
        .client(client.id.as_str())
        .detail("action", "revoked the tokens issued for the code");
    (issued, reused)
}
