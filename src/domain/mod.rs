//! Pure types and rules: no I/O, no actix, no sqlx, no system time.

pub mod claims;
pub mod client;
pub mod client_kind;
pub mod jws;
pub mod mfa;
pub mod pkce;
pub mod redirect_uri;
pub mod refresh;
pub mod scope;
pub mod second_step;
pub mod secret;
pub mod session;
pub mod signing_key;
pub mod throttle;
pub mod user;
