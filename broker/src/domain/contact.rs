//! Last contact: when a configuration last had an agent connected to any
//! broker, kept in the store so every broker (and a restarted one) knows,
//! and which configurations count as offline.
//!
//! A broker writes the contact of each configuration it holds sessions of
//! every so often, and once more when its last session of one closes; no
//! per-agent writes, so the cost grows with configurations, not agents. A
//! configuration none of whose agents is connected anywhere keeps the time
//! it was last seen, which names its offline episode: one `agent_offline`
//! event per episode.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::AgentState;
use jitgate_shared::v1::ConfigId;
use serde::{Deserialize, Serialize};

use super::agent::Agent;

/// When an agent of `configuration` was last known connected to a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastContact {
    pub configuration: ConfigId,
    pub version: u64,
    pub at: DateTime<Utc>,
}

/// A configuration no agent has carried commands for since `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offline {
    pub configuration: ConfigId,
    pub since: DateTime<Utc>,
    /// Its active agents, none of them connected.
    pub agents: usize,
}

/// What decides which configurations are offline.
#[derive(Debug, Clone)]
pub struct Watch {
    /// How long without contact makes a configuration offline.
    pub after: chrono::Duration,
    /// When this broker started: its agents get `after` to reconnect
    /// before a contact older than the start counts.
    pub started: DateTime<Utc>,
}

impl Watch {
    /// The configurations with active agents that no broker has heard from
    /// for `after`. `connected_here` are those with a session on this
    /// broker now (written to the store a moment later). A configuration
    /// never seen, or whose agents are all pending or revoked, is not
    /// watched.
    pub fn offline(
        &self,
        contacts: &[LastContact],
        agents: &[Agent],
        connected_here: &BTreeSet<ConfigId>,
        now: DateTime<Utc>,
    ) -> Vec<Offline> {
        let mut active: BTreeMap<&ConfigId, usize> = BTreeMap::new();
        for a in agents.iter().filter(|a| a.state == AgentState::Active) {
            *active.entry(&a.configuration).or_default() += 1;
        }
        contacts
            .iter()
            .filter(|c| !connected_here.contains(&c.configuration))
            .filter(|c| now - c.at.max(self.started) >= self.after)
            .filter_map(|c| {
                let agents = *active.get(&c.configuration)?;
                Some(Offline {
                    configuration: c.configuration.clone(),
                    since: c.at,
                    agents,
                })
            })
            .collect()
    }
}

/// Which contacts to write now, at `now`: every configuration connected
/// here whose stored contact is older than `refresh` (or missing), and
/// every one connected here at the last pass and no longer (its last
/// contact, whatever the stored one says). `stored` is every contact.
pub fn to_record(
    stored: &[LastContact],
    connected: &BTreeSet<ConfigId>,
    was_connected: &BTreeSet<ConfigId>,
    refresh: chrono::Duration,
    now: DateTime<Utc>,
) -> Vec<LastContact> {
    let stored: BTreeMap<&ConfigId, &LastContact> = stored.iter().map(|c| (&c.configuration, c)).collect();
    connected
        .union(was_connected)
        .filter_map(|id| {
            let current = stored.get(id);
            let left = !connected.contains(id);
            let stale = current.is_none_or(|c| now - c.at >= refresh);
            (left || stale).then(|| LastContact {
                configuration: id.clone(),
                version: current.map_or(0, |c| c.version),
                at: current.map_or(now, |c| c.at.max(now)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_shared::v1::AgentId;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn id(s: &str) -> ConfigId {
        ConfigId::new(s).unwrap()
    }

    fn agent(config: &str, state: AgentState) -> Agent {
        Agent {
            id: AgentId::generate(),
            version: 1,
            configuration: id(config),
            state,
            enrolled_at: at(-1000),
            certificate_not_after: at(100_000),
        }
    }

    fn contact(config: &str, s: i64) -> LastContact {
        LastContact {
            configuration: id(config),
            version: 3,
            at: at(s),
        }
    }

    fn watch() -> Watch {
        Watch {
            after: chrono::Duration::seconds(60),
            started: at(-3600),
        }
    }

    #[test]
    fn a_configuration_unheard_of_for_the_limit_is_offline_since_its_last_contact() {
        let agents = [
            agent("aws", AgentState::Active),
            agent("aws", AgentState::Active),
            agent("entra", AgentState::Active),
        ];
        let contacts = [contact("aws", 0), contact("entra", 30)];
        let none = BTreeSet::new();
        assert!(watch().offline(&contacts, &agents, &none, at(59)).is_empty());
        assert_eq!(
            watch().offline(&contacts, &agents, &none, at(60)),
            [Offline {
                configuration: id("aws"),
                since: at(0),
                agents: 2
            }]
        );
        // The same episode keeps its start however long it lasts.
        let later = watch().offline(&contacts, &agents, &none, at(500));
        assert_eq!(later.len(), 2);
        assert_eq!(later[0].since, at(0));
        assert_eq!(later[1].since, at(30));
    }

    #[test]
    fn connected_here_retired_or_never_seen_is_not_offline() {
        let contacts = [contact("aws", 0), contact("gone", 0)];
        let agents = [
            agent("aws", AgentState::Active),
            agent("gone", AgentState::Revoked),
            agent("waiting", AgentState::Pending),
            agent("never", AgentState::Active),
        ];
        let here = BTreeSet::from([id("aws")]);
        assert!(watch().offline(&contacts, &agents, &here, at(600)).is_empty());
    }

    #[test]
    fn a_restarted_broker_gives_agents_time_to_come_back() {
        let contacts = [contact("aws", 0)];
        let agents = [agent("aws", AgentState::Active)];
        let restarted = Watch {
            started: at(500),
            ..watch()
        };
        let none = BTreeSet::new();
        assert!(restarted.offline(&contacts, &agents, &none, at(559)).is_empty());
        // Still unheard of: offline since its real last contact.
        assert_eq!(
            restarted.offline(&contacts, &agents, &none, at(560))[0].since,
            at(0)
        );
    }

    #[test]
    fn contacts_are_refreshed_when_stale_and_written_once_more_on_leaving() {
        let refresh = chrono::Duration::seconds(15);
        let stored = [contact("aws", 0), contact("entra", 10), contact("iam", 0)];
        let connected = BTreeSet::from([id("aws"), id("entra"), id("new")]);
        let was = BTreeSet::from([id("aws"), id("iam")]);
        let written = to_record(&stored, &connected, &was, refresh, at(20));
        let ids: Vec<&str> = written.iter().map(|c| c.configuration.as_str()).collect();
        // entra is fresh; iam left since the last pass.
        assert_eq!(ids, ["aws", "iam", "new"]);
        assert!(written.iter().all(|c| c.at == at(20)));
        assert_eq!(written[0].version, 3, "compare-and-set on what was read");
        assert_eq!(written[2].version, 0);
        // Nothing connected, nothing left: nothing written.
        let none = BTreeSet::new();
        assert!(to_record(&stored, &none, &none, refresh, at(20)).is_empty());
    }
}
