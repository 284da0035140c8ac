//! The agent's one read of the wall clock.

use chrono::{DateTime, Utc};

#[allow(clippy::disallowed_methods)] // the one place the agent reads the wall clock
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// How long until `at`, zero when it has passed.
pub fn until(at: DateTime<Utc>) -> std::time::Duration {
    (at - now()).to_std().unwrap_or_default()
}
