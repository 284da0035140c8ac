//! Word of what a committed change touched (requests, grants, agents) and
//! whose records they were, without the records: what live pages need to
//! know to fetch themselves again, and all a broker tells the others that
//! share its store (see [`postgres::notify`](super::postgres::notify)).

use std::collections::BTreeSet;

use jitgate_shared::v1::UserId;
use serde::{Deserialize, Serialize};

use super::Change;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub topics: BTreeSet<Topic>,
    /// Whose requests and grants changed.
    pub people: BTreeSet<UserId>,
    /// Whose is not known (announcements were missed, or too many people
    /// to name): everyone who may see the topics hears of it.
    #[serde(default)]
    pub everyone: bool,
}

/// The most a PostgreSQL notification carries is 8,000 bytes; past this,
/// a change names no people and reaches everyone.
const MOST_BYTES: usize = 7_000;

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
        (!topics.is_empty()).then_some(Changed {
            topics,
            people,
            everyone: false,
        })
    }

    /// Anything may have changed, for anyone.
    pub fn anything() -> Changed {
        Changed {
            topics: [Topic::Requests, Topic::Grants, Topic::Agents].into(),
            people: BTreeSet::new(),
            everyone: true,
        }
    }

    /// Both changes at once.
    pub fn merge(mut self, other: Changed) -> Changed {
        self.topics.extend(other.topics);
        self.people.extend(other.people);
        self.everyone |= other.everyone;
        self
    }

    /// As announced to other brokers: JSON, small enough for a
    /// notification (past that, naming nobody and reaching everyone).
    pub fn to_payload(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        if text.len() <= MOST_BYTES {
            return text;
        }
        let everyone = Changed {
            topics: self.topics.clone(),
            people: BTreeSet::new(),
            everyone: true,
        };
        serde_json::to_string(&everyone).unwrap_or_default()
    }

    /// An announcement read back; `None` if it is not one.
    pub fn from_payload(text: &str) -> Option<Changed> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_reads_back_and_a_large_one_reaches_everyone() {
        let small = Changed {
            topics: [Topic::Requests].into(),
            people: [UserId::new("alice").unwrap()].into(),
            everyone: false,
        };
        assert_eq!(Changed::from_payload(&small.to_payload()), Some(small));
        let large = Changed {
            topics: [Topic::Grants].into(),
            people: (0..2_000)
                .map(|i| UserId::new(format!("user-{i}")).unwrap())
                .collect(),
            everyone: false,
        };
        let payload = large.to_payload();
        assert!(payload.len() <= MOST_BYTES, "{}", payload.len());
        let read = Changed::from_payload(&payload).unwrap();
        assert!(read.everyone && read.people.is_empty());
        assert_eq!(read.topics, large.topics);
        assert_eq!(Changed::from_payload("aws broker-1"), None);
    }
}
