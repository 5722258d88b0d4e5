//! Second factors: TOTP authenticators (their secrets encrypted under the master key) and
//! the single-use recovery codes. Every change writes its audit row in its transaction.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::audit::AuditEvent;
use crate::domain::user::UserId;

/// The kind of an enrolled factor (`user_factors.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    /// An authenticator app (RFC 6238).
    Totp,
    /// A WebAuthn credential (its public key in `PasskeyRecord::credential`; no sealed
    /// secret).
    Passkey,
}

impl FactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "totp" => Some(Self::Totp),
            "passkey" => Some(Self::Passkey),
            _ => None,
        }
    }
}

/// One enrolled (or, until confirmed, pending) factor.
#[derive(Debug, Clone)]
pub struct FactorRecord {
    pub id: Uuid,
    pub user_id: UserId,
    pub kind: FactorKind,
    pub name: String,
    /// The secret sealed under the master key with `id` as associated data.
    pub encrypted_secret: Vec<u8>,
    /// False until a first valid code proved the authenticator works.
    pub confirmed: bool,
    /// The highest TOTP time step accepted (RFC 6238 §5.2: a code works once).
    pub last_used_step: Option<u64>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// What is left of a user's recovery codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryCodes {
    pub remaining: u32,
    /// When one was last used (the account page warns about it).
    pub last_used_at: Option<OffsetDateTime>,
}

/// A factor confirmed by its first code.
#[derive(Debug)]
pub struct FactorConfirmation<'a> {
    pub user: UserId,
    pub factor: Uuid,
    pub step: u64,
    pub name: &'a str,
    pub now: OffsetDateTime,
    /// Hashes of a new recovery code set, given with the user's first factor.
    pub recovery_codes: Option<&'a [Vec<u8>]>,
    pub audit: &'a AuditEvent,
}

/// One sealed factor secret re-encrypted under a new master key.
#[derive(Debug)]
pub struct ReencryptedSecret {
    pub factor: Uuid,
    /// The blob as read: the update applies only if the row still holds it.
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

/// A passkey: its `user_factors` row (kind `passkey`, an empty `encrypted_secret`) and
/// its WebAuthn credential.
#[derive(Debug, Clone)]
pub struct PasskeyRecord {
    pub factor: FactorRecord,
    /// The credential id (WebAuthn Level 3 §4, "Credential ID"), unique across accounts.
    pub credential_id: Vec<u8>,
    /// The credential as JSON (webauthn-rs `Passkey`: public key, counter, flags).
    pub credential: String,
}

/// The server side of a WebAuthn ceremony in flight.
#[derive(Debug, Clone)]
pub struct Ceremony {
    /// `register:<session id>` or `login:<transaction hash>`.
    pub owner: String,
    /// The account it is for, when known (registration, a second factor).
    pub user: Option<UserId>,
    /// The webauthn-rs state, as JSON.
    pub state: String,
    pub expires_at: OffsetDateTime,
}

#[async_trait]
pub trait FactorStore: Send + Sync {
    /// The user's factors, confirmed or not, oldest first.
    async fn list_factors(&self, user: UserId) -> Result<Vec<FactorRecord>, StoreError>;
    /// Inserts a factor. A pending (unconfirmed) one replaces the user's other pending
    /// factors of its kind. `audit` is written with it when given (an enrollment by an
    /// administrator is confirmed at once).
    async fn insert_factor(
        &self,
        factor: &FactorRecord,
        recovery_codes: Option<&[Vec<u8>]>,
        audit: Option<&AuditEvent>,
    ) -> Result<(), StoreError>;
    /// Confirms a pending factor and records its first step; false if it is not the
    /// user's, not pending, or the step is not above one already used.
    async fn confirm_factor(&self, c: &FactorConfirmation<'_>) -> Result<bool, StoreError>;
    /// Records the use of `step` of a confirmed TOTP factor: true only if it is above
    /// every step used before (compare and swap, so one code signs in once).
    async fn use_totp_step(
        &self,
        factor: Uuid,
        step: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Deletes one of the user's factors; when it was the last confirmed one, the
    /// recovery codes go too. False when there was no such factor.
    async fn delete_factor(
        &self,
        user: UserId,
        factor: Uuid,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Deletes every factor and recovery code of the user; returns how many factors.
    async fn delete_factors(&self, user: UserId, audit: &AuditEvent) -> Result<u64, StoreError>;
    /// Replaces the user's recovery codes with a new set.
    async fn replace_recovery_codes(
        &self,
        user: UserId,
        hashes: &[Vec<u8>],
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Marks an unused code used (compare and swap) and writes `audit`, with the number of
    /// codes left as `remaining`, in the same transaction. `Some(remaining)` when it was
    /// spent; `None` when it is unknown or used.
    async fn use_recovery_code(
        &self,
        user: UserId,
        hash: &[u8],
        now: OffsetDateTime,
        audit: Option<&AuditEvent>,
    ) -> Result<Option<u32>, StoreError>;
    async fn recovery_codes(&self, user: UserId) -> Result<RecoveryCodes, StoreError>;
    /// Every sealed factor secret (for a master-key rotation); passkeys have none and
    /// are not listed.
    async fn list_factor_secrets(&self) -> Result<Vec<(Uuid, Vec<u8>)>, StoreError>;
    /// Inserts a confirmed passkey with its audit row (and, for the user's first
    /// factor, a recovery code set). `StoreError::Conflict` when the credential id is
    /// registered already.
    async fn insert_passkey(
        &self,
        passkey: &PasskeyRecord,
        recovery_codes: Option<&[Vec<u8>]>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// The user's passkeys, oldest first.
    async fn list_passkeys(&self, user: UserId) -> Result<Vec<PasskeyRecord>, StoreError>;
    /// The passkey with this credential id, whoever's it is.
    async fn find_passkey(&self, credential_id: &[u8])
    -> Result<Option<PasskeyRecord>, StoreError>;
    /// Records a use of the passkey: `last_used_at`, and the credential as updated by the
    /// assertion (its counter and backup flags), when given.
    async fn use_passkey(
        &self,
        factor: Uuid,
        credential: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Renames one of the user's factors; false when there is no such factor.
    async fn rename_factor(
        &self,
        user: UserId,
        factor: Uuid,
        name: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Stores a ceremony, replacing the owner's previous one.
    async fn put_ceremony(&self, ceremony: &Ceremony) -> Result<(), StoreError>;
    /// Takes (deletes and returns) the owner's ceremony if it has not expired: a
    /// ceremony state is used once.
    async fn take_ceremony(
        &self,
        owner: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Ceremony>, StoreError>;
}
