//! Word that requests, grants or agents changed, for whoever watches live
//! (the console's open pages). It carries no record, only what changed and
//! whose it was, so a listener shows only what its person may see.
//!
//! In memory and best effort: a listener that falls behind gets a
//! `Lagged` and refreshes everything. Changes committed by another broker
//! sharing the store are not heard here.

use std::collections::BTreeSet;

use jitgate_shared::v1::UserId;
use tokio::sync::broadcast;

use crate::store::Change;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Topic {
    Requests,
    Grants,
    Agents,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Requests => "requests",
            Topic::Grants => "grants",
            Topic::Agents => "agents",
        }
    }
}

/// One committed change, as listeners see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub topics: BTreeSet<Topic>,
    /// Whose requests and grants changed.
    pub people: BTreeSet<UserId>,
}

impl Changed {
    /// What `change` touches; `None` when nothing a listener shows.
    pub fn of(change: &Change) -> Option<Changed> {
        let mut topics = BTreeSet::new();
        let mut people = BTreeSet::new();
        for r in &change.requests {
            topics.insert(Topic::Requests);
            people.insert(r.requester.clone());
        }
        for g in &change.grants {
            topics.insert(Topic::Grants);
            people.insert(g.user.clone());
        }
        if !change.agents.is_empty() {
            topics.insert(Topic::Agents);
        }
        (!topics.is_empty()).then_some(Changed { topics, people })
    }

    /// Both changes at once.
    pub fn merge(mut self, other: Changed) -> Changed {
        self.topics.extend(other.topics);
        self.people.extend(other.people);
        self
    }
}

/// The broadcast of committed changes.
#[derive(Debug)]
pub struct Feed {
    tx: broadcast::Sender<Changed>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(256).0,
        }
    }
}

impl Feed {
    /// Tells the listeners (none listening is fine).
    pub fn publish(&self, changed: Changed) {
        let _ = self.tx.send(changed);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.tx.subscribe()
    }
}
