//! Passkeys (WebAuthn Level 3): registration from the account page, and the assertion
//! checks behind a sign-in without a password and behind the second step of a sign-in.
//! The relying party is the issuer: its host is the RP ID and its origin the only origin
//! accepted (§5.1.3, §7.1 step 9 and §7.2 step 13), never anything a request says.
//! Attestation is not asked for (§5.4.7 `none`). The state of a ceremony in flight is
//! kept in the database (several instances share it) and taken once.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Credential, DiscoverableAuthentication, Passkey,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, SecurityKey, SecurityKeyAuthentication, Webauthn,
};
use webauthn_rs_proto::{
    AuthenticatorSelectionCriteria, ResidentKeyRequirement, UserVerificationPolicy,
};

use super::factors::{FactorError, Factors, factor_name_or, hash_codes};
pub use super::relying_party::{PasskeyProblem, relying_party};
use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::domain::mfa::generate_recovery_codes;
use crate::domain::user::{User, UserId};
use crate::storage::{Ceremony, FactorKind, FactorRecord, PasskeyRecord, StoreError};

/// How long a ceremony may take (WebAuthn Level 3 §5.4 `timeout`: the recommended range
/// for user verification required is 300 s to 600 s).
pub const CEREMONY_LIFETIME: time::Duration = time::Duration::minutes(5);
/// The name of a passkey whose owner gave none.
pub const DEFAULT_PASSKEY_NAME: &str = "Passkey";
/// Longest credential response accepted (JSON text): a `none` attestation with the
/// largest credential id (§6.1: 1023 bytes) and an RSA key stays well under it.
pub const MAX_CREDENTIAL_JSON: usize = 8 * 1024;

/// The server side of a ceremony, as stored.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CeremonyState {
    Register(PasskeyRegistration),
    /// A sign-in without a username: any discoverable credential (§5.1.4.1 empty
    /// `allowCredentials`), user verification required.
    Discoverable(DiscoverableAuthentication),
    /// The second step: the user's credentials only, user verification preferred.
    SecondFactor(SecurityKeyAuthentication),
}

/// A verified assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasskeyUse {
    pub user: UserId,
    pub factor: Uuid,
    /// The UV flag (§6.1): the authenticator verified its user.
    pub user_verified: bool,
}

/// The owner of the ceremony started on the account page of `session`.
pub fn registration_owner(session: crate::domain::session::SessionId) -> String {
    format!("register:{}", session.0)
}

/// A credential response posted by the page, parsed (`Malformed` when it is not one).
pub fn parse_assertion(json: &str) -> Result<PublicKeyCredential, PasskeyProblem> {
    if json.len() > MAX_CREDENTIAL_JSON {
        return Err(PasskeyProblem::Malformed);
    }
    serde_json::from_str(json).map_err(|_| PasskeyProblem::Malformed)
}

fn parse_registration(json: &str) -> Result<RegisterPublicKeyCredential, PasskeyProblem> {
    if json.len() > MAX_CREDENTIAL_JSON {
        return Err(PasskeyProblem::Malformed);
    }
    serde_json::from_str(json).map_err(|_| PasskeyProblem::Malformed)
}

fn stored_passkey(record: &PasskeyRecord) -> Result<Passkey, FactorError> {
    serde_json::from_str(&record.credential)
        .map_err(|e| FactorError::Crypto(format!("stored passkey: {e}")))
}

impl Factors {
    fn relying_party(&self) -> Result<&Webauthn, FactorError> {
        self.webauthn
            .as_deref()
            .ok_or(FactorError::Passkey(PasskeyProblem::Unavailable))
    }

    pub fn passkeys_available(&self) -> bool {
        self.webauthn.is_some()
    }

    async fn put(
        &self,
        owner: String,
        user: Option<UserId>,
        state: &CeremonyState,
        now: OffsetDateTime,
    ) -> Result<(), FactorError> {
        let state = serde_json::to_string(state)
            .map_err(|e| FactorError::Crypto(format!("ceremony state: {e}")))?;
        self.store
            .put_ceremony(&Ceremony {
                owner,
                user,
                state,
                expires_at: now + CEREMONY_LIFETIME,
            })
            .await?;
        Ok(())
    }

    /// Takes the owner's ceremony (once).
    pub async fn take_ceremony(
        &self,
        owner: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(Option<UserId>, CeremonyState)>, StoreError> {
        let Some(c) = self.store.take_ceremony(owner, now).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_str(&c.state).ok().map(|s| (c.user, s)))
    }

    /// The user's passkeys.
    pub async fn passkeys(&self, user: UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        self.store.list_passkeys(user).await
    }

    /// Starts registering a passkey for `user` from the page of session `owner`: the
    /// options for `navigator.credentials.create()`.
    pub async fn begin_passkey_registration(
        &self,
        user: &User,
        owner: String,
        now: OffsetDateTime,
    ) -> Result<CreationChallengeResponse, FactorError> {
        let webauthn = self.relying_party()?;
        // §5.4.3 excludeCredentials: the same authenticator is not registered twice.
        let exclude = self
            .passkeys(user.id)
            .await?
            .iter()
            .filter_map(|p| stored_passkey(p).ok())
            .map(|p| p.cred_id().clone())
            .collect::<Vec<_>>();
        let (mut options, state) = webauthn
            .start_passkey_registration(
                user.id.0,
                user.username.as_str(),
                user.display_name(),
                Some(exclude),
            )
            .map_err(|e| FactorError::Crypto(e.to_string()))?;
        // §5.4.4 residentKey "required": a discoverable credential, so it can sign in
        // without a username. User verification stays required (§5.4.4).
        options.public_key.authenticator_selection = Some(AuthenticatorSelectionCriteria {
            authenticator_attachment: None,
            resident_key: Some(ResidentKeyRequirement::Required),
            require_resident_key: true,
            user_verification: UserVerificationPolicy::Required,
        });
        self.put(owner, Some(user.id), &CeremonyState::Register(state), now)
            .await?;
        Ok(options)
    }

    /// Finishes a registration with the authenticator's response (§7.1). Returns the new
    /// recovery codes (shown once) when this is the user's first factor.
    pub async fn finish_passkey_registration(
        &self,
        user: &User,
        owner: &str,
        response_json: &str,
        name: &str,
        now: OffsetDateTime,
        actor: &Actor,
    ) -> Result<Option<Vec<String>>, FactorError> {
        let webauthn = self.relying_party()?;
        let response = parse_registration(response_json).map_err(FactorError::Passkey)?;
        let Some((Some(owner_user), CeremonyState::Register(state))) =
            self.take_ceremony(owner, now).await?
        else {
            return Err(FactorError::Passkey(PasskeyProblem::NoCeremony));
        };
        if owner_user != user.id {
            return Err(FactorError::Passkey(PasskeyProblem::NoCeremony));
        }
        let passkey = webauthn
            .finish_passkey_registration(&response, &state)
            .map_err(|_| FactorError::Passkey(PasskeyProblem::Rejected))?;
        let credential = serde_json::to_string(&passkey)
            .map_err(|e| FactorError::Crypto(format!("passkey: {e}")))?;
        let id = Uuid::new_v4();
        let first = !self.has_any(user.id).await?;
        let codes = first.then(generate_recovery_codes);
        let hashes = codes.as_ref().map(|c| hash_codes(user.id, c));
        let name = factor_name_or(name, DEFAULT_PASSKEY_NAME);
        let record = PasskeyRecord {
            factor: FactorRecord {
                id,
                user_id: user.id,
                kind: FactorKind::Passkey,
                name,
                // A passkey has no secret here: nothing is sealed (and the master-key
                // rotation skips the row).
                encrypted_secret: Vec::new(),
                confirmed: true,
                last_used_step: None,
                created_at: now,
                last_used_at: None,
            },
            credential_id: passkey.cred_id().clone(),
            credential,
        };
        let audit = AuditEvent::new(now, AuditKind::FactorEnrolled, Outcome::Success, actor)
            .user(user.id)
            .detail("factor_id", id.to_string())
            .detail("kind", FactorKind::Passkey.as_str())
            .detail("recovery_codes_generated", first);
        match self
            .store
            .insert_passkey(&record, hashes.as_deref(), &audit)
            .await
        {
            Ok(()) => Ok(codes),
            // Registered already (to this or another account).
            Err(StoreError::Conflict(_)) => Err(FactorError::Passkey(PasskeyProblem::Rejected)),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts an authentication ceremony for the sign-in form `owner`: any discoverable
    /// credential (`user` None: a sign-in without a password), or the credentials of
    /// `user` (the second step). `None` when that user has no passkey.
    pub async fn begin_passkey_authentication(
        &self,
        owner: String,
        user: Option<UserId>,
        now: OffsetDateTime,
    ) -> Result<Option<RequestChallengeResponse>, FactorError> {
        let webauthn = self.relying_party()?;
        let (mut options, state) = match user {
            None => {
                let (options, state) = webauthn
                    .start_discoverable_authentication()
                    .map_err(|e| FactorError::Crypto(e.to_string()))?;
                (options, CeremonyState::Discoverable(state))
            }
            Some(user) => {
                let keys: Vec<SecurityKey> = self
                    .passkeys(user)
                    .await?
                    .iter()
                    .filter_map(|p| stored_passkey(p).ok())
                    .map(|p| SecurityKey::from(Credential::from(p)))
                    .collect();
                if keys.is_empty() {
                    return Ok(None);
                }
                // User verification "preferred" (§5.8.6): the password was the first
                // factor; possession of the key is the second. (webauthn-rs still
                // enforces UV for a credential registered with it, as every passkey
                // here is: see `begin_passkey_registration`.)
                let (mut options, state) = webauthn
                    .start_securitykey_authentication(&keys)
                    .map_err(|e| FactorError::Crypto(e.to_string()))?;
                // No hint: a passkey may live on this device as well as on a key.
                options.public_key.hints = None;
                (options, CeremonyState::SecondFactor(state))
            }
        };
        // The page decides between a modal request and conditional mediation (§5.1.4).
        options.mediation = None;
        self.put(owner, user, &state, now).await?;
        Ok(Some(options))
    }

    /// The registered passkey an assertion names (by its credential id, §6.1).
    pub async fn passkey_of(
        &self,
        response: &PublicKeyCredential,
    ) -> Result<Option<PasskeyRecord>, StoreError> {
        self.store.find_passkey(response.get_credential_id()).await
    }

    /// Verifies an assertion (§7.2) of `record` against the ceremony `state`; on success
    /// records the use (and the updated signature counter, §7.2 step 22). With `record_use`
    /// false the verification runs the same way but its result is discarded: nothing is
    /// recorded and the answer is `None` (a second step after a wrong password, so the
    /// time taken says nothing about the password).
    pub async fn verify_passkey(
        &self,
        state: CeremonyState,
        record: &PasskeyRecord,
        response: &PublicKeyCredential,
        now: OffsetDateTime,
        record_use: bool,
    ) -> Result<Option<PasskeyUse>, FactorError> {
        let webauthn = self.relying_party()?;
        let mut passkey = stored_passkey(record)?;
        let result = match state {
            CeremonyState::Discoverable(state) => {
                // §7.2 step 6: the user handle must be the one the credential was
                // registered for.
                let named = webauthn
                    .identify_discoverable_authentication(response)
                    .ok()
                    .map(|(user, _)| user);
                if named != Some(record.factor.user_id.0) {
                    return Ok(None);
                }
                match webauthn.finish_discoverable_authentication_v2(response, state, &passkey) {
                    // Sign-in without a password: user verification is the second factor.
                    Ok(result) if result.user_verified() => result,
                    _ => return Ok(None),
                }
            }
            CeremonyState::SecondFactor(state) => {
                match webauthn.finish_securitykey_authentication(response, &state) {
                    Ok(result) if result.cred_id() == passkey.cred_id() => result,
                    _ => return Ok(None),
                }
            }
            CeremonyState::Register(_) => return Ok(None),
        };
        if !record_use {
            return Ok(None);
        }
        let updated = match passkey.update_credential(&result) {
            Some(true) => serde_json::to_string(&passkey).ok(),
            _ => None,
        };
        self.store
            .use_passkey(record.factor.id, updated.as_deref(), now)
            .await?;
        Ok(Some(PasskeyUse {
            user: record.factor.user_id,
            factor: record.factor.id,
            user_verified: result.user_verified(),
        }))
    }

    /// Renames one of the user's factors; false when there is no such factor.
    pub async fn rename(
        &self,
        user: UserId,
        factor: Uuid,
        name: &str,
        now: OffsetDateTime,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let Some(current) = self.list(user).await?.into_iter().find(|f| f.id == factor) else {
            return Ok(false);
        };
        let default = match current.kind {
            FactorKind::Passkey => DEFAULT_PASSKEY_NAME,
            FactorKind::Totp => super::factors::DEFAULT_TOTP_NAME,
        };
        let name = factor_name_or(name, default);
        let audit = AuditEvent::new(now, AuditKind::FactorRenamed, Outcome::Success, actor)
            .user(user)
            .detail("factor_id", factor.to_string());
        self.store.rename_factor(user, factor, &name, &audit).await
    }
}

#[cfg(test)]
mod tests {
    use super::relying_party;

    #[test]
    fn the_relying_party_is_the_issuer_host_and_never_an_ip() {
        assert!(relying_party("https://login.example.com").is_ok());
        assert!(relying_party("http://localhost:8080").is_ok());
        assert!(relying_party("http://127.0.0.1:8080").is_err());
        assert!(relying_party("not a url").is_err());
    }
}
