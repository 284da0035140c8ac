//! What an agent's answer means for a queued command: settled, sent again
//! after a pause, or (a revoke) kept queued and surfaced as failing; and how
//! long those pauses are.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::CommandOp;
use jitgate_shared::v1::protocol::{FailureKind, Outcome};
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

/// Decided by the failure's kind ([`FailureKind`]), never its message.
pub fn disposition(op: CommandOp, outcome: &Outcome) -> Disposition {
    let reason = match outcome {
        Outcome::Refused { reason } => reason,
        Outcome::Failed {
            reason,
            retry_after_seconds,
            ..
        } => {
            if outcome.failure().is_some_and(|kind| retried_quietly(op, kind)) {
                return Disposition::Retry {
                    after: retry_after_seconds.map(Duration::from_secs),
                };
            }
            reason
        }
        Outcome::Applied | Outcome::AlreadyPresent | Outcome::Revoked | Outcome::AlreadyAbsent => {
            return Disposition::Settled
        }
    };
    match op {
        CommandOp::Revoke => Disposition::RevokeFailing {
            reason: reason.clone(),
        },
        CommandOp::Grant => Disposition::Settled,
    }
}

/// Whether a failure is sent again without anyone being told: what passes
/// by itself. A credential the tenant does not take is renewed by itself
/// too, but a revoke held up by it is surfaced at once (someone may have to
/// mend the credential), while still being sent again.
fn retried_quietly(op: CommandOp, kind: FailureKind) -> bool {
    match kind {
        FailureKind::Transport | FailureKind::Throttled | FailureKind::Busy => true,
        FailureKind::Unauthorised => op == CommandOp::Grant,
        FailureKind::NotFound | FailureKind::Rejected => false,
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
        let denied = Outcome::failed(FailureKind::Rejected, "denied", None);
        let throttled = Outcome::failed(FailureKind::Throttled, "throttled", Some(Duration::from_secs(7)));
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

    #[test]
    fn the_kind_decides_not_the_message() {
        let retry = Disposition::Retry { after: None };
        let failing = |reason: &str| Disposition::RevokeFailing {
            reason: reason.into(),
        };
        for (kind, grant, revoke) in [
            (FailureKind::Transport, retry.clone(), retry.clone()),
            (FailureKind::Busy, retry.clone(), retry.clone()),
            (FailureKind::Unauthorised, retry.clone(), failing("Unauthorised")),
            (FailureKind::NotFound, Disposition::Settled, failing("NotFound")),
            (FailureKind::Rejected, Disposition::Settled, failing("Rejected")),
        ] {
            let outcome = Outcome::failed(kind, format!("{kind:?}"), None);
            assert_eq!(disposition(CommandOp::Grant, &outcome), grant, "{kind:?}");
            assert_eq!(disposition(CommandOp::Revoke, &outcome), revoke, "{kind:?}");
        }
        // An agent from before kinds: `retryable` alone, as before.
        let old: Outcome =
            serde_json::from_str(r#"{"outcome":"failed","reason":"x","retryable":false}"#).unwrap();
        assert_eq!(disposition(CommandOp::Revoke, &old), failing("x"));
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
