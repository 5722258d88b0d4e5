//! One integration test binary: the real server on a random port, a fresh database per
//! test. `TEST_DB=postgres|sqlite` picks the backend (SQLite by default).
#![expect(
    clippy::expect_used,
    reason = "a failed fixture should fail the test loudly"
)]

mod account;
mod bad_input;
mod cli;
mod health;
mod helpers;
mod keys;
mod login;
mod logs;
mod oidc;
mod oidc_flows;
mod sessions;
mod storage;
mod throttling;
mod userinfo;
