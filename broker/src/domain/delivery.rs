//! Delivering commands to agents: what an agent's answer means for the
//! outbox, how long to wait before trying again, and what drifted between
//! the broker's leases and the tenant.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::CommandOp;
use jitgate_shared::v1::protocol::Outcome;
use jitgate_shared::v1::{AgentId, ConfigId, Entitlement, GrantId};
use serde::{Deserialize, Serialize};

/// What an agent answered for one command, stored before the grant it
/// concerns changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub command: String,
    pub configuration: ConfigId,
    pub grant: GrantId,
    pub op: CommandOp,
    pub agent: AgentId,
    pub outcome: Outcome,
    pub at: DateTime<Utc>,
}

/// What to do with a command after an agent's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done, for good or ill: store the result, take it off the outbox.
    Settled,
    /// Leave it queued and send it again after a pause; the cloud asked for
    /// at least `after` when it said so.
    Retry { after: Option<Duration> },
}

pub fn disposition(outcome: &Outcome) -> Disposition {
    match outcome {
        Outcome::Failed {
            retryable: true,
            retry_after_seconds,
            ..
        } => Disposition::Retry {
            after: retry_after_seconds.map(Duration::from_secs),
        },
        _ => Disposition::Settled,
    }
}

/// Whether an outcome means the command did what it asked.
pub fn succeeded(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Applied | Outcome::AlreadyPresent | Outcome::Revoked | Outcome::AlreadyAbsent
    )
}

pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Pause before attempt `attempt + 1`: exponential from [`BACKOFF_BASE`] up
/// to [`BACKOFF_MAX`], with "equal jitter" (half fixed, half random, from
/// `jitter` in `[0, 1)`) so many agents retrying do not move in step. A
/// server's Retry-After is a floor.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(BACKOFF_MAX);
    let half = capped / 2;
    let pause = half + half.mul_f64(jitter.clamp(0.0, 1.0));
    retry_after.map_or(pause, |floor| pause.max(floor))
}

/// The difference between what the broker holds leases on and what an
/// agent found in the tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    pub unexpected: Vec<Entitlement>,
    pub missing: Vec<Entitlement>,
}

/// Compares `granted` (held leases whose grant an agent confirmed and no
/// newer command is queued for) with `found` in the tenant. `pending` are
/// entitlements with a command still queued or in flight: they are in
/// motion, not drift.
pub fn drift(
    granted: &BTreeSet<Entitlement>,
    found: &BTreeSet<Entitlement>,
    pending: &BTreeSet<Entitlement>,
) -> Drift {
    Drift {
        unexpected: found
            .iter()
            .filter(|e| !granted.contains(*e) && !pending.contains(*e))
            .cloned()
            .collect(),
        missing: granted
            .iter()
            .filter(|e| !found.contains(*e) && !pending.contains(*e))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_shared::v1::Target;
    use proptest::prelude::*;

    fn ent(group: &str, who: &str) -> Entitlement {
        Entitlement {
            configuration: ConfigId::new("entra").unwrap(),
            target: Target::EntraGroupMembership {
                group_id: group.into(),
            },
            principal: who.into(),
        }
    }

    #[test]
    fn only_retryable_failures_stay_queued() {
        assert_eq!(disposition(&Outcome::Applied), Disposition::Settled);
        assert_eq!(
            disposition(&Outcome::Refused { reason: "x".into() }),
            Disposition::Settled
        );
        assert_eq!(
            disposition(&Outcome::Failed {
                reason: "denied".into(),
                retryable: false,
                retry_after_seconds: None
            }),
            Disposition::Settled
        );
        assert_eq!(
            disposition(&Outcome::Failed {
                reason: "throttled".into(),
                retryable: true,
                retry_after_seconds: Some(7)
            }),
            Disposition::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn drift_names_both_directions_and_ignores_commands_in_motion() {
        let granted: BTreeSet<_> = [ent("a", "alice"), ent("b", "bob")].into();
        let found: BTreeSet<_> = [ent("a", "alice"), ent("c", "carol"), ent("d", "dave")].into();
        let pending: BTreeSet<_> = [ent("d", "dave")].into();
        let d = drift(&granted, &found, &pending);
        assert_eq!(d.unexpected, vec![ent("c", "carol")]);
        assert_eq!(d.missing, vec![ent("b", "bob")]);
    }

    proptest! {
        #[test]
        fn backoff_grows_is_capped_and_respects_retry_after(attempt in 0u32..100, jitter in 0.0f64..1.0, floor in proptest::option::of(0u64..600)) {
            let floor = floor.map(Duration::from_secs);
            let b = backoff(attempt, floor, jitter);
            prop_assert!(b <= BACKOFF_MAX.max(floor.unwrap_or_default()));
            prop_assert!(b >= BACKOFF_BASE / 2);
            if let Some(f) = floor { prop_assert!(b >= f); }
            prop_assert!(backoff(attempt + 1, None, jitter) >= backoff(attempt, None, jitter));
        }
    }
}
