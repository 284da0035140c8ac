//! The queue rules every store backend shares. A backend stores entries and
//! answers a few reads ([`QueueBackend`]); what a change's commands and
//! settlements do to the queue is decided here:
//!
//! - **Idempotency.** A command id queued once is never queued again, even
//!   after it settled: a retried service call or a replayed change cannot
//!   send a grant twice.
//! - **Newest per entitlement.** At most one command per entitlement is
//!   queued. A newer one supersedes it, since each says what the tenant
//!   should hold by the end of it.
//! - **Revokes first.** A configuration's queue is read in [`priority`]
//!   order (revokes before grants), then in the order queued.
//! - **One per entitlement per change.** A change that queues two commands
//!   for one entitlement is a service bug (the second would supersede the
//!   first unseen): refused with [`StoreError::WrittenTwice`].

use std::collections::HashSet;

use jitgate_shared::v1::api::CommandOp;
use jitgate_shared::v1::Entitlement;

use super::command::Command;
use crate::store::StoreError;

/// Outbox order within a configuration: revokes go out before grants.
pub fn priority(command: &Command) -> u8 {
    match command.op {
        CommandOp::Revoke => 0,
        CommandOp::Grant => 1,
    }
}

/// A backend's outbox as the change being applied leaves it: reads see
/// the writes made before them in the same commit.
pub trait QueueBackend {
    /// Whether a command with this id was ever queued (queued now, settled
    /// or superseded).
    fn known(&mut self, id: &str) -> Result<bool, StoreError>;
    /// The command with this id, if it is still queued.
    fn queued(&mut self, id: &str) -> Result<Option<Command>, StoreError>;
    /// The command queued for this entitlement, if any.
    fn queued_for(&mut self, entitlement: &Entitlement) -> Result<Option<Command>, StoreError>;
    /// Takes `command` off the queue; its id stays known.
    fn remove(&mut self, command: &Command) -> Result<(), StoreError>;
    /// Appends `command` behind every queued command of its priority.
    fn append(&mut self, command: &Command, priority: u8) -> Result<(), StoreError>;
}

/// Refuses `commands` when two are for one entitlement. Checked before
/// anything of the change is written.
pub fn check(commands: &[Command]) -> Result<(), StoreError> {
    let mut entitlements = HashSet::with_capacity(commands.len());
    for c in commands {
        // The digest names the configuration too.
        if !entitlements.insert(c.entitlement.digest()) {
            return Err(StoreError::WrittenTwice {
                record: "outbox entry of entitlement",
                id: c.entitlement.key(),
            });
        }
    }
    Ok(())
}

/// Applies a change's outbox part: `settled` command ids leave the queue,
/// then `commands` are queued by the rules above. Call [`check`] first.
pub fn apply(
    backend: &mut impl QueueBackend,
    commands: &[Command],
    settled: &[String],
) -> Result<(), StoreError> {
    for id in settled {
        if let Some(command) = backend.queued(id)? {
            backend.remove(&command)?;
        }
    }
    for command in commands {
        if backend.known(&command.id)? {
            continue;
        }
        if let Some(older) = backend.queued_for(&command.entitlement)? {
            tracing::debug!(superseded = %older.id, by = %command.id, "queued command superseded");
            backend.remove(&older)?;
        }
        backend.append(command, priority(command))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::testing::command;

    /// The rules over the plainest backend: a map and a counter.
    #[derive(Default)]
    struct Plain {
        known: BTreeSet<String>,
        /// (priority, seq) → command.
        queue: BTreeMap<(u8, u64), Command>,
        seq: u64,
    }

    impl QueueBackend for Plain {
        fn known(&mut self, id: &str) -> Result<bool, StoreError> {
            Ok(self.known.contains(id))
        }
        fn queued(&mut self, id: &str) -> Result<Option<Command>, StoreError> {
            Ok(self.queue.values().find(|c| c.id == id).cloned())
        }
        fn queued_for(&mut self, e: &Entitlement) -> Result<Option<Command>, StoreError> {
            Ok(self.queue.values().find(|c| &c.entitlement == e).cloned())
        }
        fn remove(&mut self, command: &Command) -> Result<(), StoreError> {
            self.queue.retain(|_, c| c.id != command.id);
            Ok(())
        }
        fn append(&mut self, command: &Command, priority: u8) -> Result<(), StoreError> {
            self.seq += 1;
            self.known.insert(command.id.clone());
            self.queue.insert((priority, self.seq), command.clone());
            Ok(())
        }
    }

    fn ids(p: &Plain) -> Vec<&str> {
        p.queue.values().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn newest_per_entitlement_revokes_first_and_ids_once() {
        let mut p = Plain::default();
        let grant_a = command("a-grant", "a", CommandOp::Grant);
        let grant_b = command("b-grant", "b", CommandOp::Grant);
        apply(&mut p, &[grant_a.clone(), grant_b], &[]).unwrap();
        let revoke_a = command("a-revoke", "a", CommandOp::Revoke);
        apply(&mut p, &[revoke_a], &[]).unwrap();
        assert_eq!(ids(&p), ["a-revoke", "b-grant"], "superseded, and revokes first");
        // The superseded id is known: queueing it again does nothing.
        apply(&mut p, &[grant_a], &[]).unwrap();
        assert_eq!(ids(&p), ["a-revoke", "b-grant"]);
        // Settled ids leave, and do not come back.
        apply(&mut p, &[], &["b-grant".into(), "never-queued".into()]).unwrap();
        apply(&mut p, &[command("b-grant", "b", CommandOp::Grant)], &[]).unwrap();
        assert_eq!(ids(&p), ["a-revoke"]);
    }

    #[test]
    fn settling_and_queueing_one_entitlement_in_one_change() {
        let mut p = Plain::default();
        apply(&mut p, &[command("a1", "a", CommandOp::Grant)], &[]).unwrap();
        apply(&mut p, &[command("a2", "a", CommandOp::Revoke)], &["a1".into()]).unwrap();
        assert_eq!(ids(&p), ["a2"]);
    }

    #[test]
    fn two_commands_for_one_entitlement_in_a_change_are_refused() {
        let two = [
            command("a1", "a", CommandOp::Grant),
            command("a2", "a", CommandOp::Revoke),
        ];
        assert!(matches!(check(&two), Err(StoreError::WrittenTwice { .. })));
        let distinct = [
            command("a1", "a", CommandOp::Grant),
            command("b1", "b", CommandOp::Grant),
        ];
        check(&distinct).unwrap();
    }
}
