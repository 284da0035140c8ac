//! What the broker knows about connected agents, in memory: live sessions
//! (one per agent id), the last reconciliation of each, and per
//! configuration the outbox's [claims](crate::outbox::claims).
//!
//! Nothing here is durable: after a restart every agent is offline until it
//! reconnects, and queued commands are re-sent from the store's outbox.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use jitgate_shared::sync::lock;
use jitgate_shared::v1::api::DriftReport;
use jitgate_shared::v1::{AgentId, ConfigId};
use tokio::sync::Notify;

use crate::domain::agent::Presence;
use crate::outbox::claims::OutboxSignal;

/// Live sessions and outbox signals.
#[derive(Debug, Default)]
pub struct Live {
    sessions: Mutex<HashMap<AgentId, SessionEntry>>,
    drift: Mutex<HashMap<AgentId, DriftReport>>,
    outboxes: Mutex<HashMap<ConfigId, Arc<OutboxSignal>>>,
    next_session: std::sync::atomic::AtomicU64,
    /// Committed changes, for live pages.
    pub feed: super::feed::Feed,
    /// The broker's latest check of its audit chain.
    pub audit_chain: Mutex<crate::audit::verify::ChainStatus>,
    /// Signalled when a session opens: a configuration newly connected
    /// here has its [last contact](crate::domain::contact) written at once.
    pub session_opened: Notify,
    /// Configurations a session opened for since the contacts were last
    /// written (one that closed at once was in contact all the same).
    opened: Mutex<BTreeSet<ConfigId>>,
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
        lock(&self.opened).insert(configuration.clone());
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
        self.session_opened.notify_one();
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

    /// The configurations sessions opened for since the last call.
    pub fn take_opened(&self) -> BTreeSet<ConfigId> {
        std::mem::take(&mut *lock(&self.opened))
    }

    /// Puts back what [`take_opened`](Self::take_opened) took, when it
    /// could not be written.
    pub fn reopened(&self, configurations: BTreeSet<ConfigId>) {
        lock(&self.opened).extend(configurations);
    }

    /// The configurations with at least one live session here.
    pub fn connected_configurations(&self) -> BTreeSet<ConfigId> {
        lock(&self.sessions)
            .values()
            .map(|s| s.configuration.clone())
            .collect()
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
            .or_insert_with(|| Arc::new(OutboxSignal::default()))
            .clone()
    }

    /// Wakes the sessions of `configuration`: its outbox has new commands.
    pub fn outbox_changed(&self, configuration: &ConfigId) {
        self.outbox(configuration)
            .changed
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes every session: any outbox may have new commands.
    pub fn all_outboxes_changed(&self) {
        for signal in lock(&self.outboxes).values() {
            signal.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes this broker's sessions for the outboxes other brokers
    /// changed, until `wakes` ends.
    pub async fn follow(&self, mut wakes: tokio::sync::mpsc::Receiver<crate::store::OutboxWake>) {
        while let Some(wake) = wakes.recv().await {
            match wake {
                crate::store::OutboxWake::Configuration(c) => self.outbox_changed(&c),
                crate::store::OutboxWake::All => self.all_outboxes_changed(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
