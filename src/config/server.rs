//! `[server]`: the listeners, proxies, request limits and the shutdown drain.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, MINUTE, invalid, within};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub workers: usize,
    pub trusted_proxies: Vec<IpAddr>,
    pub max_form_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// On a stop signal, how long `/readyz` fails and every response closes its
    /// connection before the listener closes (`crate::shutdown`).
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// A second listener serving only `GET /metrics`; empty for none.
    pub metrics_bind: String,
}

impl ServerSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_form_bytes < 1024 || self.max_form_bytes > 1024 * 1024 {
            return Err(invalid(
                "server.max_form_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        within(
            "server.shutdown_timeout",
            self.shutdown_timeout,
            0,
            10 * MINUTE,
        )?;
        within("server.drain_delay", self.drain_delay, 0, 5 * MINUTE)?;
        if !self.metrics_bind.is_empty() {
            let port_ok = self
                .metrics_bind
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(invalid(
                    "server.metrics_bind",
                    "must be HOST:PORT (e.g. 127.0.0.1:9464), or empty for no metrics",
                ));
            }
            if self.metrics_bind == self.bind {
                return Err(invalid(
                    "server.metrics_bind",
                    "must differ from server.bind: metrics get a listener of their own",
                ));
            }
        }
        Ok(())
    }
}
