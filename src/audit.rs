//! Audit events: one row per authentication decision, written by the store in the same
//! transaction as the decision it records.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::domain::session::SessionId;
use crate::domain::user::UserId;
use crate::telemetry::current_request_id;

/// What was decided. The string forms are stable: operators filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuditKind {
    #[serde(rename = "login.success")]
    LoginSuccess,
    #[serde(rename = "login.failure")]
    LoginFailure,
    #[serde(rename = "login.throttled")]
    LoginThrottled,
    #[serde(rename = "logout")]
    Logout,
    #[serde(rename = "session.revoked")]
    SessionRevoked,
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.password_changed")]
    UserPasswordChanged,
    #[serde(rename = "user.disabled")]
    UserDisabled,
    #[serde(rename = "user.enabled")]
    UserEnabled,
    #[serde(rename = "client.created")]
    ClientCreated,
    #[serde(rename = "client.deleted")]
    ClientDeleted,
    #[serde(rename = "client.secret_rotated")]
    ClientSecretRotated,
    #[serde(rename = "client.disabled")]
    ClientDisabled,
    #[serde(rename = "client.enabled")]
    ClientEnabled,
    #[serde(rename = "consent.granted")]
    ConsentGranted,
    #[serde(rename = "consent.denied")]
    ConsentDenied,
    #[serde(rename = "authorization.denied")]
    AuthorizationDenied,
    #[serde(rename = "code.issued")]
    CodeIssued,
    #[serde(rename = "code.reused")]
    CodeReused,
    #[serde(rename = "token.issued")]
    TokenIssued,
    #[serde(rename = "token.denied")]
    TokenDenied,
    #[serde(rename = "key.rotated")]
    KeyRotated,
    #[serde(rename = "key.retired")]
    KeyRetired,
    #[serde(rename = "refresh.rotated")]
    RefreshRotated,
    #[serde(rename = "refresh.reuse_detected")]
    RefreshReuseDetected,
    #[serde(rename = "refresh.family_revoked")]
    RefreshFamilyRevoked,
    #[serde(rename = "token.revoked")]
    TokenRevoked,
    #[serde(rename = "token.introspected")]
    TokenIntrospected,
    #[serde(rename = "client.updated")]
    ClientUpdated,
    #[serde(rename = "user.updated")]
    UserUpdated,
    #[serde(rename = "user.deleted")]
    UserDeleted,
    #[serde(rename = "key.master_rotated")]
    MasterKeyRotated,
    #[serde(rename = "admin.denied")]
    AdminDenied,
    #[serde(rename = "factor.enrolled")]
    FactorEnrolled,
    #[serde(rename = "factor.removed")]
    FactorRemoved,
    #[serde(rename = "factor.renamed")]
    FactorRenamed,
    #[serde(rename = "factor.reset")]
    FactorsReset,
    #[serde(rename = "recovery_codes.generated")]
    RecoveryCodesGenerated,
    #[serde(rename = "recovery_code.used")]
    RecoveryCodeUsed,
    #[serde(rename = "second_factor.failure")]
    SecondFactorFailure,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSuccess => "login.success",
            Self::LoginFailure => "login.failure",
            Self::LoginThrottled => "login.throttled",
            Self::Logout => "logout",
            Self::SessionRevoked => "session.revoked",
            Self::UserCreated => "user.created",
            Self::UserPasswordChanged => "user.password_changed",
            Self::UserDisabled => "user.disabled",
            Self::UserEnabled => "user.enabled",
            Self::ClientCreated => "client.created",
            Self::ClientDeleted => "client.deleted",
            Self::ClientSecretRotated => "client.secret_rotated",
            Self::ClientDisabled => "client.disabled",
            Self::ClientEnabled => "client.enabled",
            Self::ConsentGranted => "consent.granted",
            Self::ConsentDenied => "consent.denied",
            Self::AuthorizationDenied => "authorization.denied",
            Self::CodeIssued => "code.issued",
            Self::CodeReused => "code.reused",
            Self::TokenIssued => "token.issued",
            Self::TokenDenied => "token.denied",
            Self::KeyRotated => "key.rotated",
            Self::KeyRetired => "key.retired",
            Self::RefreshRotated => "refresh.rotated",
            Self::RefreshReuseDetected => "refresh.reuse_detected",
            Self::RefreshFamilyRevoked => "refresh.family_revoked",
            Self::TokenRevoked => "token.revoked",
            Self::TokenIntrospected => "token.introspected",
            Self::ClientUpdated => "client.updated",
            Self::UserUpdated => "user.updated",
            Self::UserDeleted => "user.deleted",
            Self::MasterKeyRotated => "key.master_rotated",
            Self::AdminDenied => "admin.denied",
            Self::FactorEnrolled => "factor.enrolled",
            Self::FactorRemoved => "factor.removed",
            Self::FactorRenamed => "factor.renamed",
            Self::FactorsReset => "factor.reset",
            Self::RecoveryCodesGenerated => "recovery_codes.generated",
            Self::RecoveryCodeUsed => "recovery_code.used",
            Self::SecondFactorFailure => "second_factor.failure",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// Who or what acted: the request's IP and id, or the CLI; for the admin API also the
/// client whose token authorised the call.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// The admin client acting (admin API); recorded as the row's `actor_client_id`.
    pub client_id: Option<String>,
}

impl Actor {
    pub fn cli() -> Self {
        Self {
            ip: None,
            request_id: Some("cli".into()),
            client_id: None,
        }
    }
}

/// The actor of the request being served: the client's address and the request id.
pub fn actor(ip: Option<IpAddr>) -> Actor {
    Actor {
        ip: ip.map(|ip| ip.to_string()),
        request_id: Some(current_request_id()),
        client_id: None,
    }
}

/// One audit row. `details` never holds a credential.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: OffsetDateTime,
    pub kind: AuditKind,
    pub outcome: Outcome,
    pub user_id: Option<UserId>,
    pub client_id: Option<String>,
    pub session_id: Option<SessionId>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// The admin client that made the change, when it came through the admin API.
    pub actor_client_id: Option<String>,
    pub details: Value,
}

impl AuditEvent {
    pub fn new(at: OffsetDateTime, kind: AuditKind, outcome: Outcome, actor: &Actor) -> Self {
        Self {
            at,
            kind,
            outcome,
            user_id: None,
            client_id: None,
            session_id: None,
            ip: actor.ip.clone(),
            request_id: actor.request_id.clone(),
            actor_client_id: actor.client_id.clone(),
            details: Value::Object(Default::default()),
        }
    }

    pub fn user(mut self, user_id: UserId) -> Self {
        self.user_id = Some(user_id);
        self
    }

    pub fn client(mut self, client_id: &str) -> Self {
        self.client_id = Some(client_id.to_owned());
        self
    }

    pub fn session(mut self, session_id: SessionId) -> Self {
        self.session_id = Some(session_id);
        self
    }

    /// Adds `key: value` to the details object.
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(map) = &mut self.details {
            map.insert(key.to_owned(), value.into());
        }
        self
    }
}

/// An audit row as read back (CLI, admin API, tests).
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: String,
    pub outcome: String,
    pub user_id: Option<UserId>,
    pub client_id: Option<String>,
    pub session_id: Option<SessionId>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub actor_client_id: Option<String>,
    pub details: Value,
}

/// Filters for listing audit rows, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub kind: Option<String>,
    pub user_id: Option<UserId>,
    pub limit: u32,
}

/// Filters and a page of the audit trail (CLI `audit list`, admin API), newest first.
/// Every filter is optional; `before` is the cursor: rows with a smaller id.
#[derive(Debug, Clone, Default)]
pub struct AuditSearch {
    pub kind: Option<String>,
    pub user_id: Option<UserId>,
    /// The client the event concerns (e.g. the client a token was issued to).
    pub client_id: Option<String>,
    /// The admin client that acted.
    pub actor_client_id: Option<String>,
    /// `at >= since`
    pub since: Option<OffsetDateTime>,
    /// `at < until`
    pub until: Option<OffsetDateTime>,
    pub before: Option<i64>,
    pub limit: u32,
}
