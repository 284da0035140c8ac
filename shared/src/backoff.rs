//! Pauses between tries, one rule for the broker's outbox and the agent's
//! own revokes at a deadline: exponential from [`BASE`] up to a cap, with
//! "equal jitter" (half fixed, half random, from `jitter` in `[0, 1)`) so
//! many retrying parties do not move in step. A server's Retry-After is a
//! floor. Pure: the caller brings the randomness.

use std::time::Duration;

pub const BASE: Duration = Duration::from_millis(200);

/// A `Retry-After` header's value in seconds (the HTTP-date form, which
/// the APIs jitgate calls do not send, reads as absent).
pub fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Pause before attempt `attempt + 1`.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, jitter: f64, cap: Duration) -> Duration {
    let exp = BASE.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(cap);
    let half = capped / 2;
    let pause = half + half.mul_f64(jitter.clamp(0.0, 1.0));
    retry_after.map_or(pause, |floor| pause.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_only() {
        assert_eq!(retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after("-1"), None);
    }

    #[test]
    fn a_servers_pause_is_a_floor_and_the_cap_bounds_the_rest() {
        let cap = Duration::from_secs(10);
        assert!(backoff(30, None, 1.0, cap) <= cap);
        assert_eq!(
            backoff(0, Some(Duration::from_secs(60)), 0.0, cap),
            Duration::from_secs(60)
        );
    }
}
