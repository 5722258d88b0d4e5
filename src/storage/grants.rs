//! Grants: pending authorizations, authorization codes, the access-token denylist, and
//! refresh-token families. Each single-use artifact is consumed by one conditional
//! statement, so two concurrent uses cannot both win.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{LoginTransaction, StoreError};
use crate::audit::AuditEvent;
use crate::domain::claims::RequestedClaims;
use crate::domain::client::ClientId;
use crate::domain::pkce::CodeChallenge;
use crate::domain::refresh::FamilyId;
use crate::domain::scope::ScopeSet;
use crate::domain::secret::{TokenHash, kind};
use crate::domain::session::{BrowserSession, SessionId};
use crate::domain::user::UserId;

/// An authorization code as stored (RFC 6749 §4.1.2: short-lived, single use, bound to
/// the client and redirect URI; RFC 7636: bound to the PKCE challenge).
#[derive(Debug, Clone)]
pub struct AuthorizationCodeRecord {
    pub code_hash: TokenHash<kind::AuthorizationCode>,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub session_id: SessionId,
    pub redirect_uri: String,
    pub scope: ScopeSet,
    pub nonce: Option<String>,
    /// The PKCE challenge of the authorization request (RFC 7636 §4.3); none for a client
    /// registered without PKCE that sent none.
    pub code_challenge: Option<CodeChallenge>,
    pub auth_time: OffsetDateTime,
    pub amr: Vec<String>,
    /// Claims released beyond the scope (OpenID Connect Core §5.5), already consented.
    pub claims: RequestedClaims,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Everything answering an authorization request changes, in one transaction.
#[derive(Debug)]
pub struct IssueCode<'a> {
    /// The pending transaction this answers; it can be answered once.
    pub transaction: Option<TokenHash<kind::LoginTransaction>>,
    /// Scopes the user just consented to (merged into what they granted before).
    pub consent: Option<&'a ScopeSet>,
    pub code: &'a AuthorizationCodeRecord,
    pub audit: &'a [AuditEvent],
}

/// What a presented code must be bound to (RFC 6749 §4.1.3: issued to this client, for
/// this `redirect_uri`; RFC 7636 §4.6: for the challenge of the presented
/// `code_verifier`). The grant decides it; `GrantStore::redeem_code` enforces it together
/// with "unused and unexpired" in one conditional statement.
#[derive(Debug, Clone, Copy)]
pub struct CodeBinding<'a> {
    pub client_id: &'a ClientId,
    pub redirect_uri: &'a str,
    /// The S256 challenge computed from the presented code_verifier; none when none was
    /// presented (then only a code issued without a challenge matches).
    pub code_challenge: Option<&'a CodeChallenge>,
}

/// A code presented at the token endpoint, with what it must be bound to.
#[derive(Debug)]
pub struct CodeRedemption<'a> {
    pub code_hash: TokenHash<kind::AuthorizationCode>,
    pub binding: CodeBinding<'a>,
    /// The id and expiry of the access token about to be issued, so that a later reuse
    /// of the code can revoke it.
    pub access_token_jti: uuid::Uuid,
    pub access_token_expires_at: OffsetDateTime,
    /// A refresh token to issue with the code's tokens, as the first of a new family.
    pub refresh: Option<NewRefreshFamily>,
    pub audit_issued: &'a AuditEvent,
    pub audit_reused: &'a AuditEvent,
}

/// The first refresh token of a family created when a code is redeemed; the family takes
/// its user, scope, auth_time, amr and requested claims from the code.
#[derive(Debug, Clone)]
pub struct NewRefreshFamily {
    pub family_id: FamilyId,
    pub token_hash: TokenHash<kind::RefreshToken>,
    pub idle_expires_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
    /// The grant's rule for whether the family outlives the code's browser session, given
    /// the code's scope (OpenID Connect Core §11: `offline_access`). The scope is known
    /// only once the code is consumed, so storage applies the rule between the
    /// conditional update and the family's insert, in the same transaction.
    pub outlives_session: fn(&ScopeSet) -> bool,
}

#[derive(Debug)]
pub enum Redemption {
    Redeemed(Box<AuthorizationCodeRecord>),
    /// Already used: the tokens issued for it were revoked (RFC 6749 §4.1.2).
    Reused,
    /// Unknown, expired, or bound to another client, redirect URI or verifier.
    Invalid,
}

/// A stored refresh token with its family, as the refresh grant, revocation and
/// introspection need it.
#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub token_hash: TokenHash<kind::RefreshToken>,
    pub family_id: FamilyId,
    pub client_id: ClientId,
    pub user_id: UserId,
    /// None for an offline family.
    pub session_id: Option<SessionId>,
    pub scope: ScopeSet,
    pub auth_time: OffsetDateTime,
    pub amr: Vec<String>,
    /// The claims the authorization's `claims` parameter released (Core §5.5).
    pub claims: RequestedClaims,
    pub issued_at: OffsetDateTime,
    pub idle_expires_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
    pub rotated_at: Option<OffsetDateTime>,
    pub family_revoked: bool,
    /// The encrypted response that rotated this token, while the retry window lasts.
    pub successor_response: Option<Vec<u8>>,
    pub successor_until: Option<OffsetDateTime>,
    /// For a session-bound family: its browser session, unless that was revoked or has
    /// been deleted. Whether it is still live is `BrowserSession::is_live`'s to say.
    pub session: Option<BrowserSession>,
    pub user_disabled: bool,
}

impl RefreshTokenRecord {
    /// Whether the family is bound to a browser session that is still live (not revoked,
    /// not expired: `BrowserSession::is_live`). False for an offline family.
    pub fn session_live(&self, now: OffsetDateTime) -> bool {
        self.session.as_ref().is_some_and(|s| s.is_live(now))
    }
}

/// One rotation: the presented token is marked rotated and its successor inserted, in one
/// transaction, only if it is still unrotated, unexpired and its family alive.
#[derive(Debug)]
pub struct RefreshRotation<'a> {
    pub presented: TokenHash<kind::RefreshToken>,
    pub family_id: FamilyId,
    pub successor: TokenHash<kind::RefreshToken>,
    pub successor_idle_expires_at: OffsetDateTime,
    pub access_token_jti: uuid::Uuid,
    pub access_token_expires_at: OffsetDateTime,
    /// The response, sealed under the master key, kept until `response_until` for the
    /// idempotent retry window (None when the window is off).
    pub sealed_response: Option<(Vec<u8>, OffsetDateTime)>,
    /// A session-bound family: its browser session is locked (and must be live), and,
    /// when given, its idle expiry moves to that instant (a refresh is activity).
    pub touch_session: Option<(SessionId, Option<OffsetDateTime>)>,
    pub audit: &'a AuditEvent,
}

/// Codes, access-token revocation and refresh-token families.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// A transaction carrying an authorization request that is not answered yet (the
    /// sign-in step may be done).
    async fn find_pending_authorization(
        &self,
        id_hash: &TokenHash<kind::LoginTransaction>,
        now: OffsetDateTime,
    ) -> Result<Option<LoginTransaction>, StoreError>;
    /// Answers a pending authorization with a code. False when the transaction was
    /// already answered (nothing is written then).
    async fn issue_code(
        &self,
        issue: &IssueCode<'_>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Answers a pending authorization without a code (e.g. consent denied).
    async fn finish_authorization(
        &self,
        transaction: &TokenHash<kind::LoginTransaction>,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Consumes a code atomically: exactly one presentation can win.
    async fn redeem_code(
        &self,
        redemption: &CodeRedemption<'_>,
        now: OffsetDateTime,
    ) -> Result<Redemption, StoreError>;
    /// Whether the access token `jti` was revoked, the browser session `session` it was
    /// issued in has ended by revocation, or its client no longer exists (one round trip,
    /// three indexed lookups).
    async fn is_access_token_revoked(
        &self,
        jti: uuid::Uuid,
        session: Option<SessionId>,
        client: &ClientId,
    ) -> Result<bool, StoreError>;
    /// Denylists an access token until it expires (RFC 7009), with its audit row.
    async fn revoke_access_token(
        &self,
        jti: uuid::Uuid,
        expires_at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// A refresh token by hash, whatever its state, with its family.
    async fn find_refresh_token(
        &self,
        hash: &TokenHash<kind::RefreshToken>,
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// Rotates a refresh token atomically: false when another request rotated it first,
    /// or it expired or its family was revoked meanwhile (nothing is written then).
    async fn rotate_refresh_token(
        &self,
        rotation: &RefreshRotation<'_>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Revokes a family: every token in it stops working and the access tokens issued
    /// from it are denylisted. Writes `audit` whether or not the family was still live
    /// (a replay of a revoked family is recorded too); true if it was live.
    async fn revoke_refresh_family(
        &self,
        family: FamilyId,
        now: OffsetDateTime,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
}
