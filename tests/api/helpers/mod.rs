//! What the API tests share: `spawn_app()` and `TestApp` (`app`), the cookie-keeping test
//! browser (`browser`), the relying party's side of the flows (`rp`), bounded CLI child
//! processes (`process`), and the browser and `/token` flows written once for the tests
//! and the load bench (`flow`, included by `benches/load/`).

mod app;
mod browser;
pub mod flow;
mod process;
mod rp;

pub use app::{TestApp, TestDatabase, captured_logs, spawn_app, spawn_app_with, test_settings};
pub use browser::{browser, cookie_value, session_cookie_name, set_cookie};
pub use flow::{LoginForm, Pkce, hidden_field};
pub use process::run_bounded;
pub use rp::{
    WEB_REDIRECT, assert_oauth_error, authorize_path, code, code_for, exchange, exchange_web,
    follow, follow_at, pkce, public_app, public_tokens, query, refresh_as, refreshing_app, rp_http,
    web_app,
};

/// The password of every test user.
pub const PASSWORD: &str = "correct horse battery staple";
