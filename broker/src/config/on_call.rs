//! `[[on_call]]`: the on-call providers (PagerDuty, Opsgenie) workflows
//! name schedules of (`on_call = "NAME:SCHEDULE"` in `workflows.toml`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{check_https, check_name, within, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCallProvider {
    Pagerduty,
    Opsgenie,
}

/// One on-call provider account (`[[on_call]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCallConfig {
    /// Named by `on_call = "NAME:SCHEDULE"` in `workflows.toml`.
    pub name: String,
    pub provider: OnCallProvider,
    /// The REST API's base URL. Default: `https://api.pagerduty.com`, or
    /// `https://api.opsgenie.com` (`https://api.eu.opsgenie.com` in the EU).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_url: String,
    /// A file holding the API token (PagerDuty: a read-only REST API key;
    /// Opsgenie: an API integration's key), or env
    /// `JITGATE_ON_CALL_{NAME}_TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long an answer of who is on call is used before asking again.
    #[serde(default = "default_cache", with = "humantime_serde")]
    pub cache: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_cache() -> Duration {
    Duration::from_secs(60)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl OnCallConfig {
    pub fn api_url(&self) -> &str {
        if !self.api_url.is_empty() {
            return &self.api_url;
        }
        match self.provider {
            OnCallProvider::Pagerduty => "https://api.pagerduty.com",
            OnCallProvider::Opsgenie => "https://api.opsgenie.com",
        }
    }

    pub(super) fn check_all(all: &[OnCallConfig]) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for c in all {
            check_name("on_call", &c.name, &mut seen)?;
            check_https("on_call.api_url", c.api_url())?;
            within(
                "on_call.cache",
                c.cache,
                Duration::from_secs(1),
                Duration::from_secs(3600),
            )?;
            within(
                "on_call.timeout",
                c.timeout,
                Duration::from_secs(1),
                Duration::from_secs(60),
            )?;
        }
        Ok(())
    }
}
