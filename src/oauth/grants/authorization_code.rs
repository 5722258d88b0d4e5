//! The `authorization_code` grant (RFC 6749 §4.1.3) with PKCE (RFC 7636 §4.6) and the
//! ID token (OpenID Connect Core §3.1.3.3).

use std::collections::HashMap;

use uuid::Uuid;

use super::Mint;
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::client::{Client, GrantType};
use crate::domain::pkce::{CodeChallenge, challenge_for_verifier};
use crate::domain::refresh::FamilyId;
use crate::domain::secret::OpaqueToken;
use crate::oauth::Provider;
use crate::oauth::error::{EndpointError, OAuthError};
use crate::oauth::token::{Issued, TokenResponse};
use crate::storage::{CodeRedemption, NewRefreshFamily, Redemption};

impl Provider {
    pub(crate) async fn authorization_code_grant(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        actor: &Actor,
    ) -> Result<Issued, EndpointError> {
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let code = get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        let redirect_uri = get("redirect_uri")
            .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
        // A client registered without PKCE may leave the verifier out; the stored
        // challenge decides then: a code issued with one is not redeemed without it.
        let verifier = match get("code_verifier") {
            Some(v) => Some(v),
            None if !client.pkce_required() => None,
            None => {
                return Err(OAuthError::invalid_request("code_verifier is required (PKCE)").into());
            }
        };
        let invalid = || {
            OAuthError::invalid_grant(
                "the code is invalid or expired, or was issued for another client, \
                 redirect_uri or code_verifier",
            )
        };
        // RFC 9700 §4.8.2 (PKCE downgrade): a verifier's challenge is never empty, so a
        // code issued without a challenge (stored as "") is never redeemed with one, and a
        // code issued with one never without it: the redemption compares them.
        let challenge = match verifier {
            Some(v) => challenge_for_verifier(v).map_err(|_| invalid())?,
            None => CodeChallenge::from_trusted(String::new()),
        };
        let code = OpaqueToken::parse(code).ok_or_else(invalid)?;

        let now = self.clock.now();
        let jti = Uuid::new_v4();
        let expires_at = now + self.access_token_lifetime;
        // A refresh token for clients allowed the grant (RFC 6749 §1.5), first of a new
        // family.
        let refresh = client.allows_grant(GrantType::RefreshToken).then(|| {
            let token = OpaqueToken::generate();
            let (idle_expires_at, absolute_expires_at) = self.refresh.new_family(client.kind, now);
            let family = NewRefreshFamily {
                family_id: FamilyId::new(),
                token_hash: token.hash(),
                idle_expires_at,
                absolute_expires_at,
            };
            (token, family)
        });
        let mut issued = AuditEvent::new(now, AuditKind::TokenIssued, Outcome::Success, actor)
            .client(client.id.as_str())
            .detail("grant_type", "authorization_code")
            .detail("jti", jti.to_string());
        if let Some((_, family)) = &refresh {
            issued = issued.detail("family", family.family_id.to_string());
        }
        let reused = AuditEvent::new(now, AuditKind::CodeReused, Outcome::Failure, actor)
            .client(client.id.as_str())
            .detail("action", "revoked the tokens issued for the code");
        let redemption = self
            .store
            .redeem_code(
                &CodeRedemption {
                    code_hash: code.hash(),
                    client_id: &client.id,
                    redirect_uri,
                    code_challenge: challenge.as_str(),
                    access_token_jti: jti,
                    access_token_expires_at: expires_at,
                    refresh: refresh.as_ref().map(|(_, family)| family.clone()),
                    audit_issued: &issued,
                    audit_reused: &reused,
                },
                now,
            )
            .await?;
        let record = match redemption {
            Redemption::Redeemed(record) => record,
            Redemption::Reused => {
                return Err(OAuthError::invalid_grant(
                    "the code was already used; the tokens issued for it are revoked",
                )
                .into());
            }
            Redemption::Invalid => return Err(invalid().into()),
        };
        let user = self
            .store
            .find_user_by_id(record.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(|| OAuthError::invalid_grant("the user is no longer active"))?;
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
}
