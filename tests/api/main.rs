//! One integration test binary: the real server on a random port, a fresh database per
//! test. `TEST_DB=postgres|sqlite` picks the backend (SQLite by default).

mod account;
mod bad_input;
mod cli;
mod health;
mod helpers;
mod login;
mod logs;
mod sessions;
mod storage;
mod throttling;
