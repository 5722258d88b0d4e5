//! The second step of a sign-in: what a login transaction keeps while it waits for the
//! second factor (server-side only).

use serde::{Deserialize, Serialize};

use super::session::SessionId;
use super::user::UserId;

/// A sign-in whose password step is done and whose second factor is asked for, kept on
/// the login transaction (server-side only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondStep {
    pub user_id: UserId,
    /// SECURITY: the code page is shown whether or not the password was right, so a wrong
    /// code never tells someone without the second factor that the password was right.
    pub password_ok: bool,
    /// The hash the password was verified against: a password reset meanwhile ends it.
    pub verified_hash: Option<String>,
    /// When the password was verified (Unix seconds).
    pub password_at: i64,
    /// The password's throttle key, cleared with the second factor's once both passed.
    pub password_key: Option<String>,
    /// A step-up of this live session (no password asked again): the new session keeps
    /// its factors and adds the second one.
    pub step_up: Option<SessionId>,
}
