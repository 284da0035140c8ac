//! What an agent's answer means for a queued command: settled, sent again
//! after a pause, or (a revoke) kept queued and surfaced as failing; and how
//! long those pauses are.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::CommandOp;
use jitgate_shared::v1::protocol::Outcome;
use jitgate_shared::v1::{AgentId, ConfigId, GrantId};
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done, for good or ill: store the result, take it off the outbox.
    Settled,
    /// Leave it queued and send it again after a pause; the cloud asked for
    /// at least `after` when it said so.
    Retry { after: Option<Duration> },
    /// A revoke the agent refused or could not carry out for good. It is
    /// never dropped: it stays queued, is surfaced as failing, and is sent
    /// again with a backoff of up to [`FAILING_REVOKE_BACKOFF_MAX`] until it
    /// succeeds or an admin force-closes it.
    RevokeFailing { reason: String },
}

pub fn disposition(op: CommandOp, outcome: &Outcome) -> Disposition {
    match outcome {
        Outcome::Failed {
            retryable: true,
            retry_after_seconds,
            ..
        } => Disposition::Retry {
            after: retry_after_seconds.map(Duration::from_secs),
        },
        Outcome::Refused { reason } | Outcome::Failed { reason, .. } if op == CommandOp::Revoke => {
            Disposition::RevokeFailing {
                reason: reason.clone(),
            }
        }
        _ => Disposition::Settled,
    }
}

/// What became of a command after its answer was stored, for the claims of
/// its outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Off the outbox.
    Settled,
    /// Stays queued; send it again after a pause (the cloud's Retry-After
    /// as a floor).
    Retry { after: Option<Duration> },
    /// A revoke that keeps failing: stays queued, surfaced on its grant;
    /// send it again after a pause counting `attempts` failures.
    RevokeFailing { attempts: u32 },
}

/// Whether an outcome means the command did what it asked.
pub fn succeeded(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Applied | Outcome::AlreadyPresent | Outcome::Revoked | Outcome::AlreadyAbsent
    )
}

pub use jitgate_shared::backoff::{backoff, BASE as BACKOFF_BASE};

/// The longest pause after a transient failure.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The longest pause between tries of a revoke that keeps failing: an
/// operator who mends the cause (a permission, a deleted principal) sees it
/// go through within this.
pub const FAILING_REVOKE_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grants_failing_for_good_settle_and_revokes_never_do() {
        let refused = Outcome::Refused { reason: "x".into() };
        let denied = Outcome::Failed {
            reason: "denied".into(),
            retryable: false,
            retry_after_seconds: None,
        };
        let throttled = Outcome::Failed {
            reason: "throttled".into(),
            retryable: true,
            retry_after_seconds: Some(7),
        };
        assert_eq!(
            disposition(CommandOp::Grant, &Outcome::Applied),
            Disposition::Settled
        );
        assert_eq!(
            disposition(CommandOp::Revoke, &Outcome::Revoked),
            Disposition::Settled
        );
        assert_eq!(disposition(CommandOp::Grant, &refused), Disposition::Settled);
        assert_eq!(disposition(CommandOp::Grant, &denied), Disposition::Settled);
        assert_eq!(
            disposition(CommandOp::Revoke, &refused),
            Disposition::RevokeFailing { reason: "x".into() }
        );
        assert_eq!(
            disposition(CommandOp::Revoke, &denied),
            Disposition::RevokeFailing {
                reason: "denied".into()
            }
        );
        for op in [CommandOp::Grant, CommandOp::Revoke] {
            assert_eq!(
                disposition(op, &throttled),
                Disposition::Retry {
                    after: Some(Duration::from_secs(7))
                }
            );
        }
    }

    proptest! {
        #[test]
        fn backoff_grows_is_capped_and_respects_retry_after(attempt in 0u32..100, jitter in 0.0f64..1.0, floor in proptest::option::of(0u64..600), failing in any::<bool>()) {
            let cap = if failing { FAILING_REVOKE_BACKOFF_MAX } else { BACKOFF_MAX };
            let floor = floor.map(Duration::from_secs);
            let b = backoff(attempt, floor, jitter, cap);
            prop_assert!(b <= cap.max(floor.unwrap_or_default()));
            prop_assert!(b >= BACKOFF_BASE / 2);
            if let Some(f) = floor { prop_assert!(b >= f); }
            prop_assert!(backoff(attempt + 1, None, jitter, cap) >= backoff(attempt, None, jitter, cap));
        }
    }
}
