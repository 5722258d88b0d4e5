//! Portcullis: a standalone OAuth 2.0 / OpenID Connect provider.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod client_ip;
pub mod clients;
pub mod clock;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod domain;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod oauth;
pub mod password;
pub mod shutdown;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod urlencoded;
pub mod users;
