//! Commands for gateway agents, queued in a per-configuration outbox.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{CommandOp, OutboxCommandView};
use jitgate_shared::v1::{Entitlement, GrantId};
use serde::{Deserialize, Serialize};

use super::lease::{Lease, LeaseEffect};

/// How long an agent accepts a revoke after it was issued. Revokes must get
/// through late rather than never; a week covers long outages.
pub const REVOKE_VALIDITY: chrono::Duration = chrono::Duration::days(7);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Idempotency key: the same change always gets the same id, so a retried
    /// or re-queued command is recognised by the agent.
    pub id: String,
    pub op: CommandOp,
    pub grant: GrantId,
    pub entitlement: Entitlement,
    pub not_before: DateTime<Utc>,
    /// For a grant, the deadline the agent enforces by itself if it loses the
    /// broker. For a revoke, when the command itself goes stale.
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
}

impl Command {
    /// The command a lease change calls for, if any.
    pub fn for_effect(
        lease: &Lease,
        effect: LeaseEffect,
        grant: GrantId,
        not_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Command> {
        let (op, not_after, suffix) = match effect {
            LeaseEffect::Nothing => return None,
            LeaseEffect::Apply { deadline } | LeaseEffect::Prolong { deadline } => (
                CommandOp::Grant,
                deadline,
                format!("grant-{}", deadline.timestamp_millis()),
            ),
            LeaseEffect::Remove => (CommandOp::Revoke, now + REVOKE_VALIDITY, "revoke".to_owned()),
        };
        Some(Command {
            id: format!("{}-{}-{}", lease.key, lease.generation, suffix),
            op,
            grant,
            entitlement: lease.entitlement.clone(),
            not_before: if op == CommandOp::Revoke { now } else { not_before },
            not_after,
            issued_at: now,
        })
    }

    /// Revokes go out before grants.
    pub fn priority(&self) -> u8 {
        match self.op {
            CommandOp::Revoke => 0,
            CommandOp::Grant => 1,
        }
    }

    pub fn view(&self) -> OutboxCommandView {
        OutboxCommandView {
            command_id: self.id.clone(),
            op: self.op,
            grant: self.grant,
            entitlement: self.entitlement.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
            issued_at: self.issued_at,
        }
    }
}
