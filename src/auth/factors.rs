//! Second factors of an account: TOTP enrollment (by the user, confirmed by a first code,
//! or by an administrator for provisioning), recovery codes, removal and reset, and the
//! check of a code at sign-in. The account page, the CLI and the admin API call these same
//! functions. Secrets are sealed under the master key; every change is audited in its
//! transaction.

use std::sync::Arc;

use secrecy::{ExposeSecret as _, SecretSlice};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::mfa::{
    self, CodeRejection, factor_secret_aad, generate_recovery_codes, generate_totp_secret,
    normalize_recovery_code, recovery_code_hash,
};
use crate::domain::user::{User, UserId};
use crate::keys::MasterKey;
use crate::storage::{
    FactorConfirmation, FactorKind, FactorRecord, RecoveryCodes, Store, StoreError,
};

/// Longest factor name kept (longer ones are cut).
pub const MAX_FACTOR_NAME: usize = 64;
/// The name of an authenticator whose owner gave none.
pub const DEFAULT_TOTP_NAME: &str = "Authenticator app";

#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The master key cannot open a stored secret (or sealing failed).
    #[error("second-factor secret: {0}")]
    Crypto(String),
    /// The pending enrollment is gone (confirmed elsewhere, replaced, or removed).
    #[error("this setup has expired; start again")]
    NoPendingEnrollment,
    #[error("{0}")]
    Code(CodeProblem),
    /// Recovery codes only make sense with a second factor.
    #[error("set up a second factor first")]
    NoFactor,
    #[error("{0}")]
    Passkey(super::relying_party::PasskeyProblem),
}

/// What was wrong with a code typed during enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeProblem {
    Malformed,
    Wrong,
}

impl std::fmt::Display for CodeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "enter the 6-digit code from your authenticator app",
            Self::Wrong => {
                "that code is not right; check your device's clock and try the current code"
            }
        })
    }
}

/// A TOTP authenticator being set up: shown once (the secret never leaves the server
/// again).
#[derive(Debug, Clone, Serialize)]
pub struct TotpSetup {
    pub factor_id: Uuid,
    /// RFC 4648 base32, for manual entry.
    pub secret: String,
    /// The `otpauth://totp/…` URI authenticator apps read from the QR code.
    pub otpauth_uri: String,
}

impl TotpSetup {
    /// The QR code of `otpauth_uri` as an inline SVG element (rendered here: no external
    /// service sees the secret).
    pub fn qr_svg(&self) -> Option<String> {
        let code = qrcode::QrCode::new(self.otpauth_uri.as_bytes()).ok()?;
        let svg = code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build();
        // Drop the XML prolog: the element is embedded in an HTML page.
        svg.find("<svg").map(|at| svg[at..].to_owned())
    }
}

/// A factor as the account page, the CLI and the admin API show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FactorView {
    pub factor_id: Uuid,
    /// `totp` or `passkey`.
    pub kind: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<&FactorRecord> for FactorView {
    fn from(f: &FactorRecord) -> Self {
        Self {
            factor_id: f.id,
            kind: f.kind.as_str().to_owned(),
            name: f.name.clone(),
            created_at: f.created_at,
            last_used_at: f.last_used_at,
        }
    }
}

/// A user's second factors at a glance (the account page).
#[derive(Debug, Clone)]
pub struct FactorSummary {
    /// Confirmed factors, oldest first.
    pub factors: Vec<FactorRecord>,
    /// Empty (the default) when there is no factor.
    pub recovery_codes: RecoveryCodes,
}

/// A user's confirmed factors and what is left of their recovery codes, as
/// `portcullis users mfa list` and `GET /admin/v1/users/{user_id}/factors` show them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FactorList {
    pub factors: Vec<FactorView>,
    /// Unused recovery codes (0 without a factor).
    pub recovery_codes_remaining: u32,
}

/// A TOTP factor an administrator enrolled, as the CLI and the admin API hand it over:
/// the secret and the recovery codes are shown this once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProvisionedTotp {
    pub factor_id: Uuid,
    /// RFC 4648 base32, for manual entry.
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub secret: String,
    /// The `otpauth://totp/…` URI authenticator apps read from a QR code.
    pub otpauth_uri: String,
    /// A new set when this is the user's first factor, else `null` (the old set stays).
    pub recovery_codes: Option<Vec<String>>,
}

impl From<(TotpSetup, Option<Vec<String>>)> for ProvisionedTotp {
    fn from((setup, recovery_codes): (TotpSetup, Option<Vec<String>>)) -> Self {
        Self {
            factor_id: setup.factor_id,
            secret: setup.secret,
            otpauth_uri: setup.otpauth_uri,
            recovery_codes,
        }
    }
}

/// A code accepted at sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorUsed {
    Totp {
        factor: Uuid,
    },
    RecoveryCode {
        remaining: u32,
    },
    /// A passkey's assertion (the second step), with its UV flag.
    Passkey {
        factor: Uuid,
        user_verified: bool,
    },
}

/// The second factors of accounts, over the store and the master key.
#[derive(Clone)]
pub struct Factors {
    pub store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    /// The issuer's name in authenticator apps (the issuer's host).
    issuer_label: String,
    /// The WebAuthn relying party (the issuer); `None` when the issuer's host is not a
    /// domain name (WebAuthn Level 3 §5.1.3), and passkeys are then off.
    pub(super) webauthn: Option<Arc<webauthn_rs::Webauthn>>,
}

impl Factors {
    pub fn new(store: Arc<dyn Store>, master: MasterKey, issuer: &str) -> Self {
        let issuer_label = url::Url::parse(issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "Portcullis".to_owned());
        let webauthn = match super::relying_party::relying_party(issuer) {
            Ok(rp) => Some(Arc::new(rp)),
            Err(reason) => {
                tracing::info!(%reason, "passkeys are off");
                None
            }
        };
        Self {
            store,
            master: Arc::new(master),
            issuer_label,
            webauthn,
        }
    }

    fn seal(&self, factor: Uuid, secret: &[u8]) -> Result<Vec<u8>, FactorError> {
        self.master
            .encrypt(secret, factor_secret_aad(factor).as_bytes())
            .map_err(|e| FactorError::Crypto(e.to_string()))
    }

    fn open(&self, f: &FactorRecord) -> Result<SecretSlice<u8>, FactorError> {
        self.master
            .decrypt(&f.encrypted_secret, factor_secret_aad(f.id).as_bytes())
            .map(SecretSlice::from)
            .map_err(|e| FactorError::Crypto(e.to_string()))
    }

    fn setup(&self, factor: Uuid, secret: &[u8], user: &User) -> Result<TotpSetup, FactorError> {
        let totp = mfa::totp(secret, &self.issuer_label, user.username.as_str())
            .map_err(FactorError::Crypto)?;
        Ok(TotpSetup {
            factor_id: factor,
            secret: totp.secret().to_base32(),
            otpauth_uri: totp
                .to_url()
                .map_err(|e| FactorError::Crypto(e.to_string()))?,
        })
    }

    /// The user's confirmed factors.
    pub async fn list(&self, user: UserId) -> Result<Vec<FactorRecord>, StoreError> {
        Ok(self
            .store
            .list_factors(user)
            .await?
            .into_iter()
            .filter(|f| f.confirmed)
            .collect())
    }

    /// The user's confirmed factors with the count of unused recovery codes.
    pub async fn overview(&self, user: UserId) -> Result<FactorList, StoreError> {
        let factors = self
            .list(user)
            .await?
            .iter()
            .map(FactorView::from)
            .collect();
        let recovery_codes_remaining = self.store.recovery_codes(user).await?.remaining;
        Ok(FactorList {
            factors,
            recovery_codes_remaining,
        })
    }

    pub async fn has_any(&self, user: UserId) -> Result<bool, StoreError> {
        Ok(!self.list(user).await?.is_empty())
    }

    /// Starts a TOTP enrollment: a pending factor (replacing an earlier pending one) that
    /// signs nothing in until `confirm_totp`.
    pub async fn begin_totp(
        &self,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<TotpSetup, FactorError> {
        let id = Uuid::new_v4();
        let secret = SecretSlice::from(generate_totp_secret());
        let setup = self.setup(id, secret.expose_secret(), user)?;
        let record = FactorRecord {
            id,
            user_id: user.id,
            kind: FactorKind::Totp,
            name: DEFAULT_TOTP_NAME.to_owned(),
            encrypted_secret: self.seal(id, secret.expose_secret())?,
            confirmed: false,
            last_used_step: None,
            created_at: now,
            last_used_at: None,
        };
        self.store.insert_factor(&record, None, None).await?;
        Ok(setup)
    }

    /// The setup of the user's pending TOTP factor `factor`, shown again (its secret
    /// opened) when the first code typed was not accepted.
    pub async fn pending_totp(&self, user: &User, factor: Uuid) -> Result<TotpSetup, FactorError> {
        let factors = self.store.list_factors(user.id).await?;
        let pending = factors
            .iter()
            .find(|f| f.id == factor && !f.confirmed && f.kind == FactorKind::Totp)
            .ok_or(FactorError::NoPendingEnrollment)?;
        let secret = self.open(pending)?;
        self.setup(pending.id, secret.expose_secret(), user)
    }

    /// What the account page shows: the confirmed factors and the recovery codes left.
    pub async fn summary(&self, user: UserId) -> Result<FactorSummary, StoreError> {
        let factors = self.list(user).await?;
        let recovery_codes = if factors.is_empty() {
            RecoveryCodes::default()
        } else {
            self.recovery_codes(user).await?
        };
        Ok(FactorSummary {
            factors,
            recovery_codes,
        })
    }

    /// Confirms a pending TOTP factor with its first code. Returns the new recovery codes
    /// (shown once) when this is the user's first factor.
    pub async fn confirm_totp(
        &self,
        user: &User,
        factor: Uuid,
        typed_code: &str,
        name: &str,
        now: OffsetDateTime,
        actor: &Actor,
    ) -> Result<Option<Vec<String>>, FactorError> {
        let factors = self.store.list_factors(user.id).await?;
        let pending = factors
            .iter()
            .find(|f| f.id == factor && !f.confirmed)
            .ok_or(FactorError::NoPendingEnrollment)?;
        let secret = self.open(pending)?;
        let step =
            mfa::check_totp(secret.expose_secret(), typed_code, now, None).map_err(
                |r| match r {
                    CodeRejection::Malformed => FactorError::Code(CodeProblem::Malformed),
                    CodeRejection::Wrong | CodeRejection::Replayed => {
                        FactorError::Code(CodeProblem::Wrong)
                    }
                },
            )?;
        let first = !factors.iter().any(|f| f.confirmed);
        let codes = first.then(generate_recovery_codes);
        let hashes = codes.as_ref().map(|c| hash_codes(user.id, c));
        let name = factor_name(name);
        let audit = AuditEvent::new(now, AuditKind::FactorEnrolled, Outcome::Success, actor)
            .user(user.id)
            .detail("factor_id", factor.to_string())
            .detail("kind", FactorKind::Totp.as_str())
            .detail("recovery_codes_generated", first);
        let confirmed = self
            .store
            .confirm_factor(&FactorConfirmation {
                user: user.id,
                factor,
                step,
                name: &name,
                now,
                recovery_codes: hashes.as_deref(),
                audit: &audit,
            })
            .await?;
        if !confirmed {
            return Err(FactorError::NoPendingEnrollment);
        }
        Ok(codes)
    }

    /// An administrator enrolls a TOTP factor for the user (provisioning): confirmed at
    /// once; the secret is returned to be handed over. Recovery codes are generated when
    /// it is the user's first factor, and returned too.
    pub async fn enroll_totp_for(
        &self,
        user: &User,
        name: Option<&str>,
        now: OffsetDateTime,
        actor: &Actor,
    ) -> Result<(TotpSetup, Option<Vec<String>>), FactorError> {
        let id = Uuid::new_v4();
        let secret = SecretSlice::from(generate_totp_secret());
        let setup = self.setup(id, secret.expose_secret(), user)?;
        let first = !self.has_any(user.id).await?;
        let codes = first.then(generate_recovery_codes);
        let hashes = codes.as_ref().map(|c| hash_codes(user.id, c));
        let record = FactorRecord {
            id,
            user_id: user.id,
            kind: FactorKind::Totp,
            name: factor_name(name.unwrap_or(DEFAULT_TOTP_NAME)),
            encrypted_secret: self.seal(id, secret.expose_secret())?,
            confirmed: true,
            last_used_step: None,
            created_at: now,
            last_used_at: None,
        };
        let audit = AuditEvent::new(now, AuditKind::FactorEnrolled, Outcome::Success, actor)
            .user(user.id)
            .detail("factor_id", id.to_string())
            .detail("kind", FactorKind::Totp.as_str())
            .detail("by_administrator", true)
            .detail("recovery_codes_generated", first);
        self.store
            .insert_factor(&record, hashes.as_deref(), Some(&audit))
            .await?;
        Ok((setup, codes))
    }

    /// Removes one factor; false when the user has no such factor.
    pub async fn remove(
        &self,
        user: UserId,
        factor: Uuid,
        now: OffsetDateTime,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let audit = AuditEvent::new(now, AuditKind::FactorRemoved, Outcome::Success, actor)
            .user(user)
            .detail("factor_id", factor.to_string());
        self.store.delete_factor(user, factor, &audit).await
    }

    /// Removes every factor and recovery code (a lost phone); returns how many factors.
    pub async fn reset(
        &self,
        user: UserId,
        now: OffsetDateTime,
        actor: &Actor,
    ) -> Result<u64, StoreError> {
        let audit =
            AuditEvent::new(now, AuditKind::FactorsReset, Outcome::Success, actor).user(user);
        self.store.delete_factors(user, &audit).await
    }

    /// A new set of recovery codes, replacing the old one; shown once.
    pub async fn regenerate_recovery_codes(
        &self,
        user: UserId,
        now: OffsetDateTime,
        actor: &Actor,
    ) -> Result<Vec<String>, FactorError> {
        if !self.has_any(user).await? {
            return Err(FactorError::NoFactor);
        }
        let codes = generate_recovery_codes();
        let audit = AuditEvent::new(
            now,
            AuditKind::RecoveryCodesGenerated,
            Outcome::Success,
            actor,
        )
        .user(user);
        self.store
            .replace_recovery_codes(user, &hash_codes(user, &codes), now, &audit)
            .await?;
        Ok(codes)
    }

    pub async fn recovery_codes(&self, user: UserId) -> Result<RecoveryCodes, StoreError> {
        self.store.recovery_codes(user).await
    }

    /// Checks a code typed at sign-in: a TOTP code of any confirmed factor (each step
    /// once), or an unused recovery code (spent here).
    /// The use of a recovery code is audited (as `actor`) with it.
    pub async fn check(
        &self,
        user: UserId,
        typed: &str,
        now: OffsetDateTime,
        actor: &Actor,
    ) -> Result<Result<SecondFactorUsed, CodeRejection>, FactorError> {
        self.check_and(user, typed, now, Some(actor)).await
    }

    /// The same reads and cryptography as `check`, but nothing is spent and the answer is
    /// always a refusal: for a code typed after a wrong password, so the time the answer
    /// takes does not tell the two cases apart.
    pub async fn check_without_effect(
        &self,
        user: UserId,
        typed: &str,
        now: OffsetDateTime,
    ) -> Result<CodeRejection, FactorError> {
        Ok(match self.check_and(user, typed, now, None).await? {
            Err(CodeRejection::Malformed) => CodeRejection::Malformed,
            _ => CodeRejection::Wrong,
        })
    }

    async fn check_and(
        &self,
        user: UserId,
        typed: &str,
        now: OffsetDateTime,
        // `None`: nothing is spent (see `check_without_effect`).
        spend_as: Option<&Actor>,
    ) -> Result<Result<SecondFactorUsed, CodeRejection>, FactorError> {
        let spend = spend_as.is_some();
        if let Some(code) = normalize_recovery_code(typed) {
            let hash = recovery_code_hash(user, &code);
            let Some(actor) = spend_as else {
                self.store.recovery_codes(user).await?;
                return Ok(Err(CodeRejection::Wrong));
            };
            let audit = AuditEvent::new(now, AuditKind::RecoveryCodeUsed, Outcome::Success, actor)
                .user(user);
            return Ok(
                match self
                    .store
                    .use_recovery_code(user, &hash, now, Some(&audit))
                    .await?
                {
                    Some(remaining) => Ok(SecondFactorUsed::RecoveryCode { remaining }),
                    None => Err(CodeRejection::Wrong),
                },
            );
        }
        if mfa::normalize_totp_code(typed).is_none() {
            return Ok(Err(CodeRejection::Malformed));
        }
        let mut outcome = Err(CodeRejection::Wrong);
        let totps = self.list(user).await?.into_iter();
        for factor in totps.filter(|f| f.kind == FactorKind::Totp) {
            // A secret this master key cannot open (sealed by an instance still holding
            // the old key during a rotation) fails only its own factor, not the others.
            let secret = match self.open(&factor) {
                Ok(secret) => secret,
                Err(error) => {
                    tracing::error!(factor = %factor.id, %error, "a second-factor secret cannot be opened");
                    continue;
                }
            };
            match mfa::check_totp(secret.expose_secret(), typed, now, factor.last_used_step) {
                Ok(_) if !spend => {}
                Ok(step) => {
                    if self.store.use_totp_step(factor.id, step, now).await? {
                        return Ok(Ok(SecondFactorUsed::Totp { factor: factor.id }));
                    }
                    outcome = Err(CodeRejection::Replayed);
                }
                Err(CodeRejection::Replayed) => outcome = Err(CodeRejection::Replayed),
                Err(_) => {}
            }
        }
        Ok(outcome)
    }
}

pub(super) fn hash_codes(user: UserId, codes: &[String]) -> Vec<Vec<u8>> {
    codes
        .iter()
        .filter_map(|c| normalize_recovery_code(c))
        .map(|c| recovery_code_hash(user, &c))
        .collect()
}

/// A factor name as kept: trimmed, control characters dropped, at most
/// `MAX_FACTOR_NAME` characters; the default when nothing is left.
pub fn factor_name(typed: &str) -> String {
    factor_name_or(typed, DEFAULT_TOTP_NAME)
}

/// `factor_name` with another default.
pub fn factor_name_or(typed: &str, default: &str) -> String {
    let name: String = typed
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FACTOR_NAME)
        .collect();
    if name.is_empty() {
        default.to_owned()
    } else {
        name
    }
}
