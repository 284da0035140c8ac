//! What the broker knows about connected agents, in memory: live sessions
//! (one per agent id), the last reconciliation of each, and per
//! configuration the outbox signal and the claims that keep one command per
//! entitlement in flight.
//!
//! Nothing here is durable: after a restart every agent is offline until it
//! reconnects, and queued commands are re-sent from the store's outbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::DriftReport;
use jitgate_shared::v1::{AgentId, ConfigId};
use tokio::sync::{watch, Notify};

use crate::domain::agent::Presence;
use crate::domain::command::Command;
use crate::domain::delivery;
use crate::domain::lease::Lease;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Live sessions and outbox signals.
#[derive(Debug, Default)]
pub struct Live {
    sessions: Mutex<HashMap<AgentId, SessionEntry>>,
    drift: Mutex<HashMap<AgentId, DriftReport>>,
    outboxes: Mutex<HashMap<ConfigId, Arc<OutboxSignal>>>,
    next_session: std::sync::atomic::AtomicU64,
}

/// One live session.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    pub id: u64,
    pub configuration: ConfigId,
    pub agent_version: String,
    pub last_seen: DateTime<Utc>,
    /// Notified to end the session (revoked agent, newer session).
    pub kick: Arc<Notify>,
}

impl Live {
    /// Registers a session for `agent`; an older session of the same agent
    /// is told to end. Returns the new session's id and its kick signal.
    pub fn open_session(
        &self,
        agent: AgentId,
        configuration: ConfigId,
        agent_version: String,
        now: DateTime<Utc>,
    ) -> SessionEntry {
        let id = self
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entry = SessionEntry {
            id,
            configuration,
            agent_version,
            last_seen: now,
            kick: Arc::new(Notify::new()),
        };
        if let Some(old) = lock(&self.sessions).insert(agent, entry.clone()) {
            tracing::info!(%agent, "a newer session replaces the live one");
            old.kick.notify_one();
        }
        entry
    }

    /// Removes the session if it is still the live one for `agent`.
    pub fn close_session(&self, agent: AgentId, session: u64) {
        let mut sessions = lock(&self.sessions);
        if sessions.get(&agent).is_some_and(|s| s.id == session) {
            sessions.remove(&agent);
        }
    }

    pub fn seen(&self, agent: AgentId, session: u64, now: DateTime<Utc>) {
        if let Some(s) = lock(&self.sessions).get_mut(&agent).filter(|s| s.id == session) {
            s.last_seen = now;
        }
    }

    /// Ends `agent`'s live session, if any.
    pub fn kick(&self, agent: AgentId) {
        if let Some(s) = lock(&self.sessions).remove(&agent) {
            s.kick.notify_one();
        }
    }

    pub fn record_drift(&self, agent: AgentId, report: DriftReport) {
        lock(&self.drift).insert(agent, report);
    }

    pub fn presence(&self, agent: AgentId) -> Presence {
        let session = lock(&self.sessions).get(&agent).cloned();
        Presence {
            online: session.is_some(),
            last_seen: session.as_ref().map(|s| s.last_seen),
            agent_version: session.map(|s| s.agent_version),
            drift: lock(&self.drift).get(&agent).cloned(),
        }
    }

    /// The outbox signal and claims of `configuration`.
    pub fn outbox(&self, configuration: &ConfigId) -> Arc<OutboxSignal> {
        lock(&self.outboxes)
            .entry(configuration.clone())
            .or_insert_with(|| Arc::new(OutboxSignal::new()))
            .clone()
    }

    /// Wakes the sessions of `configuration`: its outbox has new commands.
    pub fn outbox_changed(&self, configuration: &ConfigId) {
        self.outbox(configuration)
            .changed
            .send_modify(|n| *n = n.wrapping_add(1));
    }
}

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

impl OutboxSignal {
    fn new() -> Self {
        Self {
            changed: watch::Sender::new(0),
            claims: Mutex::new(Claims::default()),
        }
    }

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
            let lease = Lease::key_for(&command.entitlement);
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
        let lease = Lease::key_for(&command.entitlement);
        if claims
            .in_flight
            .get(&lease)
            .is_some_and(|(id, _)| *id == command.id)
        {
            claims.in_flight.remove(&lease);
        }
        if settled {
            claims.retry.remove(&command.id);
        }
        drop(claims);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The command failed in a way worth retrying: release it and hold it
    /// back for a growing, jittered pause. Returns the pause.
    pub fn retry_later(&self, command: &Command, floor: Option<Duration>, now: Instant) -> Duration {
        self.hold_back(command, floor, 0, delivery::BACKOFF_MAX, now)
    }

    /// A revoke that keeps failing: held back longer each time, up to
    /// [`delivery::FAILING_REVOKE_BACKOFF_MAX`], counting at least
    /// `attempts` (as stored: a restart does not start the backoff over).
    pub fn revoke_failing(&self, command: &Command, attempts: u32, now: Instant) -> Duration {
        self.hold_back(command, None, attempts, delivery::FAILING_REVOKE_BACKOFF_MAX, now)
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
        let pause = delivery::backoff(attempts, floor, rand::random::<f64>(), cap);
        claims
            .retry
            .insert(command.id.clone(), (attempts + 1, now + pause));
        let lease = Lease::key_for(&command.entitlement);
        if claims
            .in_flight
            .get(&lease)
            .is_some_and(|(id, _)| *id == command.id)
        {
            claims.in_flight.remove(&lease);
        }
        drop(claims);
        pause
    }

    /// Everything `session` had in flight goes back to the queue.
    pub fn release_session(&self, session: u64) {
        lock(&self.claims).in_flight.retain(|_, (_, s)| *s != session);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
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
    use jitgate_shared::v1::{Entitlement, GrantId, Target};

    fn command(id: &str, group: &str) -> Command {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Command {
            id: id.into(),
            op: CommandOp::Grant,
            grant: GrantId::generate(),
            entitlement: Entitlement {
                configuration: ConfigId::new("entra").unwrap(),
                target: Target::EntraGroupMembership {
                    group_id: group.into(),
                },
                principal: "alice".into(),
            },
            not_before: t,
            not_after: t,
            issued_at: t,
            cap_session_duration: false,
            end_sign_in_sessions: false,
            provision_on_demand: None,
        }
    }

    #[test]
    fn one_command_per_entitlement_in_flight_and_backoff_holds_back() {
        let o = OutboxSignal::new();
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
    fn a_newer_session_kicks_the_older_and_closing_the_old_keeps_the_new() {
        let live = Live::default();
        let agent = AgentId::generate();
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let config = ConfigId::new("entra").unwrap();
        let first = live.open_session(agent, config.clone(), "1".into(), t);
        let second = live.open_session(agent, config, "1".into(), t);
        live.close_session(agent, first.id);
        assert!(live.presence(agent).online);
        live.close_session(agent, second.id);
        assert!(!live.presence(agent).online);
    }
}
