//! Time, for the broker's services and the agent's executor alike. Domain
//! code takes `now` as an argument; services ask a [`Clock`] so tests can
//! move time with a [`ManualClock`] instead of sleeping.

use std::fmt::Debug;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + Debug + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// How long until `at` by this clock, zero when it has passed.
    fn until(&self, at: DateTime<Utc>) -> std::time::Duration {
        (at - self.now()).to_std().unwrap_or_default()
    }
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place the wall clock is read
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told, for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: chrono::Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }

    pub fn set(&self, to: DateTime<Utc>) {
        if let Ok(mut t) = self.0.lock() {
            *t = to;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        match self.0.lock() {
            Ok(t) => *t,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = ManualClock::new(start);
        let at = start + chrono::Duration::seconds(90);
        assert_eq!(clock.until(at), std::time::Duration::from_secs(90));
        clock.advance(chrono::Duration::seconds(60));
        assert_eq!(clock.now(), start + chrono::Duration::seconds(60));
        assert_eq!(clock.until(at), std::time::Duration::from_secs(30));
        clock.set(at + chrono::Duration::seconds(1));
        assert_eq!(clock.until(at), std::time::Duration::ZERO, "passed");
    }
}
