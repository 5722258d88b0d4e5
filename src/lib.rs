//! Portcullis: a standalone OAuth 2.0 / OpenID Connect provider.
//!
//! Imports point one way, top to bottom: `http` → `admin` → `app` → `oauth`/`auth` →
//! `clients`/`users`/`keys` → `storage` → `domain`; see `docs/architecture.md`.

/// The admin REST API at `/admin/v1` (RFC 9457 problems), behind Portcullis's own tokens.
pub mod admin;
/// `AppState`: the services every request shares.
pub mod app;
/// Audit events: one row per authentication decision.
pub mod audit;
/// Browser sign-in with throttling, and the sessions behind the login cookie.
pub mod auth;
/// The command line (`serve`, `users`, `clients`, `keys`, `doctor`, …).
pub mod cli;
/// The client's IP address, through trusted proxies only.
pub mod client_ip;
/// Client registration, shared by the CLI and the admin API.
pub mod clients;
/// The source of "now"; tests inject a fixed clock.
pub mod clock;
/// Layered settings and their validation.
pub mod config;
/// `serve --demo`: a demo user and the example SPA's client.
pub mod demo;
/// `portcullis doctor`: a pre-flight check of a deployment.
pub mod doctor;
/// Pure types and rules of the protocol: no I/O.
pub mod domain;
/// Routes, thin handlers, cookies, CORS, middleware, and errors as responses.
pub mod http;
/// Signing keys: master key, key ring, rotation, JWT checks.
pub mod keys;
/// Prometheus counters, served on the internal metrics listener.
pub mod metrics;
/// The protocol endpoints' rules: authorize, token and grants, userinfo, introspection,
/// revocation, logout, discovery.
pub mod oauth;
/// argon2id password hashing on a bounded blocking pool.
pub mod password;
/// Graceful shutdown: the draining flag and signal handling.
pub mod shutdown;
/// Builds the server from settings (for `main` and the tests).
pub mod startup;
/// The `Store` trait and its Postgres and SQLite implementations.
pub mod storage;
/// Structured logs; secrets never reach a log line.
pub mod telemetry;
/// Strict `application/x-www-form-urlencoded` parsing (duplicates refused).
pub mod urlencoded;
/// User and session administration, shared by the CLI and the admin API.
pub mod users;
