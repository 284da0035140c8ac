//! Which queued commands are in flight or waiting out a backoff, per
//! configuration, in memory: one command per entitlement in flight at a
//! time, so an agent never sees them out of order; a command that failed
//! in a way worth retrying is held back for a growing, jittered pause.
//!
//! Nothing here is durable: after a restart every queued command may be
//! sent at once (a revoke that kept failing starts from its stored attempt
//! count).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jitgate_shared::sync::lock;
use tokio::sync::watch;

use super::answer::{self, Answered};
use super::command::Command;

/// A held-back command that has been free to go for this long was settled
/// or superseded without its claim hearing of it: its entry is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Per configuration: a counter bumped on every outbox change (sessions wait
/// on it and never miss a bump), and which commands are in flight or
/// waiting out a backoff.
#[derive(Debug)]
pub struct OutboxSignal {
    pub changed: watch::Sender<u64>,
    claims: Mutex<Claims>,
}

#[derive(Debug, Default)]
struct Claims {
    /// Lease key → (command id, session). One command per entitlement is in
    /// flight at a time, so an agent never sees them out of order.
    in_flight: HashMap<String, (String, u64)>,
    /// Command id → (failed attempts, not before).
    retry: HashMap<String, (u32, Instant)>,
}

impl Claims {
    /// Takes `command` out of flight, if it is the one in flight for its
    /// entitlement.
    fn free(&mut self, command: &Command) {
        let lease = command.entitlement.digest();
        if self
            .in_flight
            .get(&lease)
            .is_some_and(|(id, _)| *id == command.id)
        {
            self.in_flight.remove(&lease);
        }
    }
}

impl Default for OutboxSignal {
    fn default() -> Self {
        Self {
            changed: watch::Sender::new(0),
            claims: Mutex::new(Claims::default()),
        }
    }
}

impl OutboxSignal {
    /// Of `queued` (in outbox order), the commands `session` may send now:
    /// no other command for the same entitlement in flight, not waiting
    /// out a backoff. They are claimed for `session`.
    pub fn claim(&self, queued: Vec<Command>, session: u64, room: usize, now: Instant) -> Vec<Command> {
        let mut claims = lock(&self.claims);
        let mut out = Vec::new();
        for command in queued {
            if out.len() >= room {
                break;
            }
            if claims.retry.get(&command.id).is_some_and(|(_, at)| *at > now) {
                continue;
            }
            let lease = command.entitlement.digest();
            if claims.in_flight.contains_key(&lease) {
                continue;
            }
            claims.in_flight.insert(lease, (command.id.clone(), session));
            out.push(command);
        }
        out
    }

    /// The command is answered (or its session gave up on it).
    pub fn release(&self, command: &Command, settled: bool) {
        let mut claims = lock(&self.claims);
        claims.free(command);
        if settled {
            claims.retry.remove(&command.id);
        }
        drop(claims);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Frees or holds back `command` as its stored answer calls for.
    /// Returns the pause when it is held back.
    pub fn answered(&self, command: &Command, answered: Answered, now: Instant) -> Option<Duration> {
        match answered {
            Answered::Settled => {
                self.release(command, true);
                None
            }
            Answered::Retry { after } => Some(self.retry_later(command, after, now)),
            Answered::RevokeFailing { attempts } => Some(self.revoke_failing(command, attempts, now)),
        }
    }

    /// The command failed in a way worth retrying: release it and hold it
    /// back for a growing, jittered pause. Returns the pause.
    pub fn retry_later(&self, command: &Command, floor: Option<Duration>, now: Instant) -> Duration {
        self.hold_back(command, floor, 0, answer::BACKOFF_MAX, now)
    }

    /// A revoke that keeps failing: held back longer each time, up to
    /// [`answer::FAILING_REVOKE_BACKOFF_MAX`], counting at least
    /// `attempts` (as stored: a restart does not start the backoff over).
    pub fn revoke_failing(&self, command: &Command, attempts: u32, now: Instant) -> Duration {
        self.hold_back(command, None, attempts, answer::FAILING_REVOKE_BACKOFF_MAX, now)
    }

    fn hold_back(
        &self,
        command: &Command,
        floor: Option<Duration>,
        attempts_at_least: u32,
        cap: Duration,
        now: Instant,
    ) -> Duration {
        let mut claims = lock(&self.claims);
        let attempts = claims
            .retry
            .get(&command.id)
            .map_or(0, |(a, _)| *a)
            .max(attempts_at_least);
        let pause = answer::backoff(attempts, floor, rand::random::<f64>(), cap);
        claims
            .retry
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < FORGET_AFTER);
        claims
            .retry
            .insert(command.id.clone(), (attempts + 1, now + pause));
        claims.free(command);
        drop(claims);
        pause
    }

    /// Everything `session` had in flight goes back to the queue.
    pub fn release_session(&self, session: u64) {
        let released = {
            let mut claims = lock(&self.claims);
            let before = claims.in_flight.len();
            claims.in_flight.retain(|_, (_, s)| *s != session);
            claims.in_flight.len() < before
        };
        // Only freed commands are news: every session of the configuration
        // wakes at a bump and reads the outbox, and when thousands of
        // sessions end together (a broker stopping) a bump for each would
        // make that thousands of reads each.
        if released {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// When the earliest held-back command may go again.
    pub fn next_retry(&self) -> Option<Instant> {
        lock(&self.claims).retry.values().map(|(_, at)| *at).min()
    }

    /// Whether a command for this entitlement is in flight.
    pub fn in_flight(&self, lease_key: &str) -> bool {
        lock(&self.claims).in_flight.contains_key(lease_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_shared::v1::api::CommandOp;

    fn command(id: &str, group: &str) -> Command {
        crate::testing::command(id, group, CommandOp::Grant)
    }

    #[test]
    fn one_command_per_entitlement_in_flight_and_backoff_holds_back() {
        let o = OutboxSignal::default();
        let now = Instant::now();
        let a1 = command("a1", "a");
        let a2 = command("a2", "a");
        let b = command("b", "b");
        let claimed = o.claim(vec![a1.clone(), a2.clone(), b.clone()], 1, 10, now);
        assert_eq!(
            claimed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["a1", "b"]
        );
        // Another session gets nothing while those are in flight.
        assert!(o
            .claim(vec![a1.clone(), a2.clone(), b.clone()], 2, 10, now)
            .is_empty());
        let pause = o.retry_later(&a1, None, now);
        assert!(o.claim(vec![a1.clone()], 2, 10, now).is_empty(), "held back");
        assert_eq!(o.claim(vec![a1.clone()], 2, 10, now + pause).len(), 1);
        // A session that goes away hands its claims back.
        o.release_session(1);
        assert_eq!(o.claim(vec![b.clone()], 2, 10, now).len(), 1);
        o.release(&b, true);
        assert_eq!(o.claim(vec![b], 3, 1, now).len(), 1);
    }

    #[test]
    fn a_session_ending_wakes_the_others_only_when_it_frees_a_command() {
        let o = OutboxSignal::default();
        let mut woken = o.changed.subscribe();
        woken.mark_unchanged();
        o.release_session(1);
        assert!(!woken.has_changed().unwrap(), "nothing was in flight");
        assert_eq!(o.claim(vec![command("a", "a")], 2, 10, Instant::now()).len(), 1);
        o.release_session(1);
        assert!(!woken.has_changed().unwrap(), "another session's claim");
        o.release_session(2);
        assert!(woken.has_changed().unwrap(), "a command to send again");
    }

    #[test]
    fn an_answer_frees_or_holds_back_as_stored() {
        let o = OutboxSignal::default();
        let now = Instant::now();
        let a = command("a", "a");
        assert_eq!(o.claim(vec![a.clone()], 1, 10, now).len(), 1);
        assert_eq!(o.answered(&a, Answered::Settled, now), None);
        assert_eq!(o.claim(vec![a.clone()], 1, 10, now).len(), 1, "settled: free");
        let pause = o
            .answered(&a, Answered::RevokeFailing { attempts: 10 }, now)
            .expect("a failing revoke is held back");
        assert!(
            pause >= Duration::from_secs(100),
            "counts the stored attempts: {pause:?}"
        );
        assert!(o.claim(vec![a.clone()], 1, 10, now).is_empty());
        assert_eq!(o.next_retry(), Some(now + pause));
    }

    #[test]
    fn held_back_commands_long_free_to_go_are_forgotten() {
        let o = OutboxSignal::default();
        let now = Instant::now();
        let old = command("old", "a");
        let pause = o.retry_later(&old, None, now);
        // Much later another command is held back: the old entry, free to
        // go for over FORGET_AFTER (settled or superseded unseen), goes.
        let later = now + pause + FORGET_AFTER + Duration::from_secs(1);
        o.retry_later(&command("new", "b"), None, later);
        assert_eq!(lock(&o.claims).retry.len(), 1);
        assert!(lock(&o.claims).retry.contains_key("new"));
    }
}
