//! What administrators see of the signing keys (CLI `keys list`, admin API): identifiers,
//! states and dates, never private material.

use serde::Serialize;
use time::OffsetDateTime;

use crate::storage::{SigningKeyRecord, Store, StoreError};

/// A signing key's public facts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = KeyView)]
pub struct KeyInfo {
    pub kid: String,
    #[schema(example = "RS256")]
    pub alg: String,
    /// `next` (published, not signing yet), `current` (signing) or `retired` (published
    /// until `remove_after`).
    #[schema(example = "current")]
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub remove_after: Option<OffsetDateTime>,
}

impl From<SigningKeyRecord> for KeyInfo {
    fn from(k: SigningKeyRecord) -> Self {
        // The encrypted private key and the stored JWK are dropped here.
        Self {
            kid: k.kid,
            alg: k.alg.as_str().to_owned(),
            state: k.state.as_str().to_owned(),
            created_at: k.created_at,
            activated_at: k.activated_at,
            retired_at: k.retired_at,
            remove_after: k.remove_after,
        }
    }
}

/// Every stored key, oldest first.
pub async fn list(store: &dyn Store) -> Result<Vec<KeyInfo>, StoreError> {
    Ok(store
        .list_signing_keys()
        .await?
        .into_iter()
        .map(KeyInfo::from)
        .collect())
}
