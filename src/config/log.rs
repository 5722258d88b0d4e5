//! `[log]`: the tracing filter and the output format.

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

impl LogSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return Err(invalid(
                "log.level",
                "is not a tracing filter (e.g. \"info\" or \"portcullis=debug,info\")",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, Settings};

    #[test]
    fn an_unreadable_log_filter_is_a_configuration_error() {
        let mut s = Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
        s.log.level = "info,portcullis=loud".into();
        assert!(matches!(
            s.validated(),
            Err(ConfigError::Invalid {
                key: "log.level",
                ..
            })
        ));
    }
}
