//! HTTP: routes, thin handlers, extractors, middleware and the mapping of errors to
//! responses.

pub mod cookies;
pub mod cors;
pub mod error;
pub mod extract;
pub mod form;
pub mod handlers;
pub mod middleware;
pub mod pages;
pub mod routes;
