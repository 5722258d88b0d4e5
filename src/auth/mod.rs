//! Browser authentication: sign-in forms, password checks with throttling, and the
//! server-side sessions behind the login cookie. No HTTP types here.

mod factors;
mod ip_limit;
mod login;
mod passkeys;
mod relying_party;
mod session;

use std::sync::Arc;

pub use factors::{
    CodeProblem, DEFAULT_TOTP_NAME, FactorError, FactorList, FactorSummary, FactorView, Factors,
    MAX_FACTOR_NAME, ProvisionedTotp, SecondFactorUsed, TotpSetup, factor_name,
};
pub use ip_limit::IpLimiter;
pub use login::{
    Browser, DEFAULT_RETURN_TO, LiveForm, LoginError, LoginFailure, LoginOutcome, MissingFields,
    PasskeyForm, PasskeyOptionsForm, SecondFactorForm, SecondFactorRequest, SignInForm,
    SignInOutcome, SignInRequest,
};
pub use passkeys::{
    CEREMONY_LIFETIME, CeremonyState, DEFAULT_PASSKEY_NAME, MAX_CREDENTIAL_JSON, PasskeyProblem,
    PasskeyUse, parse_assertion, registration_owner, relying_party,
};
pub use session::CurrentSession;

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::session::SessionPolicy;
use crate::domain::throttle::{ThrottleKeys, ThrottlePolicy};
use crate::password::PasswordHasher;
use crate::storage::Store;

/// The services sign-in and sessions need, shared by every request.
#[derive(Clone)]
pub struct Authenticator {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub hasher: PasswordHasher,
    pub sessions: SessionPolicy,
    pub throttle: ThrottlePolicy,
    /// Keys the per-account counters; derived from the master key at startup.
    pub throttle_keys: ThrottleKeys,
    pub ip_limiter: Arc<IpLimiter>,
    /// Sign-in forms opened per client IP (each one is a database row).
    pub form_limiter: Arc<IpLimiter>,
    pub transaction_lifetime: time::Duration,
    /// Second factors: enrollment, recovery codes, and the check at sign-in.
    pub factors: Factors,
    /// Every user must sign in with a second factor (`login.require_mfa`).
    pub require_mfa: bool,
}

impl Authenticator {
    pub fn new(
        settings: &Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hasher: PasswordHasher,
        throttle_keys: ThrottleKeys,
        master: crate::keys::MasterKey,
    ) -> Self {
        let d = |s: std::time::Duration| time::Duration::try_from(s).unwrap_or(time::Duration::MAX);
        Self {
            store: Arc::clone(&store),
            clock,
            hasher,
            sessions: settings.session.policy(),
            throttle: settings
                .login
                .throttle_policy(settings.password.queue_timeout),
            throttle_keys,
            ip_limiter: Arc::new(IpLimiter::new(
                settings.login.ip_max_failures,
                d(settings.login.ip_window),
            )),
            form_limiter: Arc::new(IpLimiter::new(
                settings.login.forms_per_ip_per_minute,
                time::Duration::minutes(1),
            )),
            transaction_lifetime: d(settings.login.transaction_lifetime),
            factors: Factors::new(Arc::clone(&store), master, &settings.issuer),
            require_mfa: settings.login.require_mfa,
        }
    }

    /// Whether `ip` may open another sign-in form now; otherwise the seconds to wait.
    pub fn may_open_form(&self, ip: Option<std::net::IpAddr>) -> Result<(), u64> {
        let Some(ip) = ip else { return Ok(()) };
        let now = self.clock.now();
        self.form_limiter
            .reserve(ip, now)
            .map_err(|until| crate::domain::throttle::retry_after_secs(now, until))
    }
}
