//! One integration test binary: the real server on a random port, a fresh database per
//! test. `TEST_DB=postgres|sqlite` picks the backend (SQLite by default).
#![expect(
    clippy::expect_used,
    reason = "a failed fixture should fail the test loudly"
)]

mod account;
mod account_mfa;
mod admin;
mod algorithms;
mod bad_input;
mod claims_parameter;
mod cli;
mod client_auth;
mod client_controls;
mod client_credentials;
mod cors;
mod docs;
mod doctor;
mod health;
mod helpers;
mod instances;
mod keys;
mod login;
mod logs;
mod metrics;
mod mfa_admin;
mod mfa_login;
mod native_example;
mod oidc;
mod oidc_flows;
mod outage;
mod passkeys;
mod refresh;
mod revocation;
mod rp_logout;
mod sessions;
mod shutdown;
mod storage;
mod throttling;
mod userinfo;
