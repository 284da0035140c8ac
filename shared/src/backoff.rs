//! Pauses between tries, one rule for the broker's outbox and the agent's
//! own revokes at a deadline: exponential from [`BASE`] up to a cap, with
//! "equal jitter" (half fixed, half random, from `jitter` in `[0, 1)`) so
//! many retrying parties do not move in step. A server's Retry-After is a
//! floor. Pure: the caller brings the randomness.

use std::time::Duration;

pub const BASE: Duration = Duration::from_millis(200);

/// Pause before attempt `attempt + 1`.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, jitter: f64, cap: Duration) -> Duration {
    let exp = BASE.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(cap);
    let half = capped / 2;
    let pause = half + half.mul_f64(jitter.clamp(0.0, 1.0));
    retry_after.map_or(pause, |floor| pause.max(floor))
}
