//! The protocol: authorization, token, userinfo, logout and discovery, as functions over domain
//! types. HTTP lives in `http/`, SQL in `storage/`.

pub mod authorize;
pub mod bearer;
pub mod claims;
pub mod discovery;
pub mod error;
pub mod grants;
pub mod introspect;
pub mod logout;
pub mod revoke;
pub mod token;
pub mod userinfo;

use std::sync::Arc;

use time::Duration;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::refresh::RefreshPolicy;
use crate::keys::KeyRing;
use crate::storage::Store;

/// Everything the protocol endpoints share.
#[derive(Clone)]
pub struct Provider {
    pub issuer: String,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub keys: KeyRing,
    pub auth: Authenticator,
    pub access_token_lifetime: Duration,
    pub id_token_lifetime: Duration,
    pub code_lifetime: Duration,
    pub refresh: RefreshPolicy,
}

impl Provider {
    pub fn new(settings: &Settings, auth: Authenticator, keys: KeyRing) -> Self {
        let d = |s: std::time::Duration| Duration::try_from(s).unwrap_or(Duration::MAX);
        Self {
            issuer: settings.issuer.clone(),
            store: Arc::clone(&auth.store),
            clock: Arc::clone(&auth.clock),
            keys,
            auth,
            access_token_lifetime: d(settings.tokens.access_token_lifetime),
            id_token_lifetime: d(settings.tokens.id_token_lifetime),
            code_lifetime: d(settings.tokens.authorization_code_lifetime),
            refresh: settings.tokens.refresh_policy(),
        }
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}
