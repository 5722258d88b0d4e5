//! What a sign-in comes to: the reply kinds the sign-in page renders, and the errors
//! that end it without a verdict.

use crate::domain::mfa::CodeRejection;
use crate::domain::secret::{OpaqueToken, kind};
use crate::domain::session::BrowserSession;
use crate::storage::{LoginTransaction, StoreError};

use super::request::MissingFields;

/// The answer to a posted sign-in form.
#[derive(Debug)]
pub enum SignInOutcome {
    /// The form is unknown, expired, used, served to another browser or its CSRF token
    /// does not match: nothing happened. A fresh form was opened for the browser
    /// (`Ok(tx)`), unless its address opened too many (`Err(retry_after)`).
    Expired(Result<OpaqueToken<kind::LoginTransaction>, u64>),
    /// The form was live: the verdict on what it carried.
    Checked {
        form: Box<LiveForm>,
        /// As typed, trimmed: shown again when the form is.
        username: String,
        outcome: LoginOutcome,
    },
}

/// A sign-in form that is live and was served to this browser.
#[derive(Debug)]
pub struct LiveForm {
    pub tx: OpaqueToken<kind::LoginTransaction>,
    pub transaction: LoginTransaction,
}

#[derive(Debug)]
pub enum LoginOutcome {
    /// A field was left empty: shown next to it, and not counted as an attempt.
    Incomplete(MissingFields),
    /// Signed in: set `cookie` and go to `return_to`, a plain local path.
    Success {
        cookie: OpaqueToken<kind::SessionToken>,
        session: Box<BrowserSession>,
        return_to: String,
    },
    /// Wrong credentials, shown as one generic message whatever the cause.
    Rejected(LoginFailure),
    /// Too many failures for this account or address.
    Throttled { retry_after: u64 },
    /// The password step is done: ask for the second factor (on the same transaction).
    SecondFactor,
    /// The code was not accepted (the password may not have been right either: the page
    /// says only that the code did not work).
    CodeRejected(CodeRejection),
    /// The code field was empty: shown next to it, not counted.
    CodeMissing,
    /// A passkey response was not accepted (as the second step, also after a wrong
    /// password: the page says only that the passkey did not work).
    PasskeyRejected(crate::auth::PasskeyProblem),
    /// A step-up completed: the session (same cookie) now has the second factor.
    SteppedUp { return_to: String },
}

/// Why a sign-in failed; only the audit trail sees the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    UnknownUser,
    BadPassword,
    Disabled,
    InvalidInput,
}

impl LoginFailure {
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::BadPassword => "bad_password",
            Self::Disabled => "disabled",
            Self::InvalidInput => "invalid_input",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The transaction was consumed or expired while the password was checked.
    #[error("the sign-in form has expired")]
    Expired,
    /// Password hashing stayed saturated for the whole queue timeout.
    #[error("too many sign-ins at once")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password verification failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Factor(#[from] crate::auth::FactorError),
}
