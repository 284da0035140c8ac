//! The commands a lease change calls for, and their ids. The outbox holds
//! exactly the [`CommandBody`] that is signed when sent.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::CommandOp;
use jitgate_shared::v1::signing::CommandBody;
use jitgate_shared::v1::GrantId;

use crate::domain::lease::{Lease, LeaseEffect};

/// A queued command: the wire body itself.
pub type Command = CommandBody;

/// How long an agent accepts a revoke after it was issued. Revokes must get
/// through late rather than never; a week covers long outages.
pub const REVOKE_VALIDITY: chrono::Duration = chrono::Duration::days(7);

const REVOKE_SUFFIX: &str = "revoke";

/// The id of the revoke that ended `lease`'s current generation (whether or
/// not it is still queued).
pub fn revoke_id(lease: &Lease) -> String {
    format!("{}-{}-{REVOKE_SUFFIX}", lease.key, lease.generation)
}

/// The command a lease change calls for, if any. The id is the idempotency
/// key: the same change always gets the same id, so a retried or re-queued
/// command is recognised by the agent. A grant command's id names the lease
/// version it was read at: a deadline that goes back to an earlier value
/// (shortened, then extended again) is a new command, not one the outbox
/// already delivered.
pub fn for_effect(
    lease: &Lease,
    effect: LeaseEffect,
    grant: GrantId,
    not_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Command> {
    let (op, not_after, suffix) = match effect {
        LeaseEffect::Nothing => return None,
        LeaseEffect::Apply { deadline }
        | LeaseEffect::Prolong { deadline }
        | LeaseEffect::Shorten { deadline } => (
            CommandOp::Grant,
            deadline,
            format!("grant-{}-{}", deadline.timestamp_millis(), lease.version),
        ),
        LeaseEffect::Remove => (CommandOp::Revoke, now + REVOKE_VALIDITY, REVOKE_SUFFIX.to_owned()),
    };
    Some(CommandBody {
        id: format!("{}-{}-{}", lease.key, lease.generation, suffix),
        op,
        grant,
        entitlement: lease.entitlement.clone(),
        not_before: if op == CommandOp::Revoke { now } else { not_before },
        not_after,
        issued_at: now,
        cap_session_duration: false,
        end_sign_in_sessions: false,
        provision_on_demand: None,
    })
}
