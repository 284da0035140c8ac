//! Last contact: each broker writes when its configurations last had an
//! agent connected, and reads which configurations are offline (rules in
//! [`crate::domain::contact`]). [`run`] keeps the contacts; the
//! notification loop raises `agent_offline` from them.

use std::collections::BTreeSet;
use std::time::Duration;

use jitgate_shared::v1::ConfigId;
use tokio::sync::watch;

use super::{Broker, ServiceError};
use crate::domain::contact::{self, Offline, Watch};
use crate::store::Change;

impl Broker {
    /// Writes the last contacts due now: configurations connected here (or
    /// connected for a moment since the last pass) whose stored contact is
    /// older than `refresh`, and those of `was_connected` no longer
    /// connected. Returns the configurations connected here, the next
    /// pass's `was_connected`.
    pub async fn record_contacts(
        &self,
        was_connected: &BTreeSet<ConfigId>,
        refresh: Duration,
    ) -> Result<BTreeSet<ConfigId>, ServiceError> {
        let opened = self.live.take_opened();
        let connected = self.live.connected_configurations();
        let seen: BTreeSet<ConfigId> = connected.union(&opened).cloned().collect();
        if seen.is_empty() && was_connected.is_empty() {
            return Ok(connected);
        }
        let refresh = chrono::Duration::from_std(refresh).unwrap_or(chrono::Duration::MAX);
        match self.write_contacts(&seen, was_connected, refresh).await {
            Ok(()) => Ok(connected),
            Err(e) => {
                // Tried again at the next pass.
                self.live.reopened(opened);
                Err(e)
            }
        }
    }

    async fn write_contacts(
        &self,
        seen: &BTreeSet<ConfigId>,
        was_connected: &BTreeSet<ConfigId>,
        refresh: chrono::Duration,
    ) -> Result<(), ServiceError> {
        let stored = self.store.last_contacts().await?;
        let writes = contact::to_record(&stored, seen, was_connected, refresh, self.clock.now());
        let changes = writes
            .into_iter()
            .map(|c| Change {
                last_contacts: vec![c],
                ..Change::default()
            })
            .collect();
        for result in self.store.commit_all(changes).await {
            match result {
                // Another broker wrote it a moment ago: its write stands.
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// The configurations none of whose active agents has been connected
    /// to any broker for `watch.after`.
    pub async fn offline_configurations(&self, watch: &Watch) -> Result<Vec<Offline>, ServiceError> {
        let (contacts, agents) = tokio::try_join!(self.store.last_contacts(), self.store.agents())?;
        let here = self.live.connected_configurations();
        Ok(watch.offline(&contacts, &agents, &here, self.clock.now()))
    }
}

/// Keeps this broker's last contacts: every `refresh`, and at once when a
/// session opens, until `shutdown` changes. On shutdown the configurations
/// connected here are written once more.
pub async fn run(broker: Broker, refresh: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut was_connected = BTreeSet::new();
    loop {
        match broker.record_contacts(&was_connected, refresh).await {
            Ok(connected) => was_connected = connected,
            Err(e) => tracing::warn!(error = %e, "recording agents' last contact failed; trying again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(refresh) => {}
            _ = broker.live.session_opened.notified() => {}
            _ = shutdown.changed() => break,
        }
    }
    // Sessions end with the broker: their contact is now.
    let last = std::mem::take(&mut was_connected);
    if let Err(e) = broker.record_contacts(&last, Duration::ZERO).await {
        tracing::warn!(error = %e, "recording agents' last contact at shutdown failed");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jitgate_shared::v1::api::AgentState;
    use jitgate_shared::v1::AgentId;

    use super::*;
    use crate::domain::agent::Agent;
    use crate::notify::event::EventKind;
    use crate::notify::route::Address;
    use crate::testing::{harness, t0, Harness};

    const REFRESH: Duration = Duration::from_secs(15);

    fn aws() -> ConfigId {
        ConfigId::new("aws").unwrap()
    }

    async fn active_agent(h: &Harness) -> AgentId {
        let agent = Agent {
            id: AgentId::generate(),
            version: 0,
            configuration: aws(),
            state: AgentState::Active,
            enrolled_at: t0(),
            certificate_not_after: t0() + chrono::Duration::days(1),
        };
        let id = agent.id;
        h.broker
            .store
            .commit(Change {
                agents: vec![agent],
                ..Change::default()
            })
            .await
            .unwrap();
        id
    }

    fn watch() -> Watch {
        Watch {
            after: chrono::Duration::seconds(60),
            started: t0(),
        }
    }

    async fn offline(h: &Harness) -> Vec<Offline> {
        h.broker.offline_configurations(&watch()).await.unwrap()
    }

    async fn contact_at(h: &Harness) -> Option<chrono::DateTime<chrono::Utc>> {
        let contacts = h.broker.store.last_contacts().await.unwrap();
        contacts
            .into_iter()
            .find(|c| c.configuration == aws())
            .map(|c| c.at)
    }

    #[tokio::test]
    async fn contacts_follow_sessions_and_name_each_offline_episode() {
        let h = harness().await;
        let agent = active_agent(&h).await;
        let live = &h.broker.live;
        let secs = chrono::Duration::seconds;

        // A session that opened and closed between passes was contact.
        let s = live.open_session(agent, aws(), "1".into(), t0());
        live.close_session(agent, s.id);
        let was = h.broker.record_contacts(&BTreeSet::new(), REFRESH).await.unwrap();
        assert!(was.is_empty());
        assert_eq!(contact_at(&h).await, Some(t0()));
        h.clock.advance(secs(60));
        let gone = offline(&h).await;
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].since, gone[0].agents), (t0(), 1));

        // Connected here: not offline, refreshed only once stale.
        let s = live.open_session(agent, aws(), "1".into(), t0() + secs(60));
        let was = h.broker.record_contacts(&BTreeSet::new(), REFRESH).await.unwrap();
        assert_eq!(was, BTreeSet::from([aws()]));
        assert!(offline(&h).await.is_empty());
        let back = t0() + secs(60);
        assert_eq!(contact_at(&h).await, Some(back));
        h.clock.advance(secs(5));
        let was = h.broker.record_contacts(&was, REFRESH).await.unwrap();
        assert_eq!(contact_at(&h).await, Some(back), "fresh: not written");

        // Gone: written once more as it leaves, offline from then.
        live.close_session(agent, s.id);
        h.clock.advance(secs(5));
        assert!(h.broker.record_contacts(&was, REFRESH).await.unwrap().is_empty());
        let left = back + secs(10);
        assert_eq!(contact_at(&h).await, Some(left));
        h.clock.advance(secs(59));
        assert!(offline(&h).await.is_empty());
        h.clock.advance(secs(1));
        assert_eq!(offline(&h).await[0].since, left, "a new episode");
    }

    #[tokio::test]
    async fn agent_offline_goes_to_the_channels_of_the_configuration_s_resources_once() {
        let h = harness().await;
        // Routes: the defaults' mailbox, prod's security desk (a resource
        // of the configuration), and people, whom the event cannot name.
        let workflows = format!(
            "{}\n[defaults.notify]\nrequester = [\"agent_offline\"]\napprovers = [\"*\"]\n\"email:ops@example.com\" = [\"agent_offline\"]\n\
             [group.prod.notify]\n\"email:security@example.com\" = [\"agent_offline\"]\n",
            crate::testing::WORKFLOWS
        );
        let sources = [
            crate::domain::policy::PolicySource {
                path: "p.cedar".into(),
                text: crate::testing::POLICY.into(),
            },
            crate::domain::policy::PolicySource {
                path: "workflows.toml".into(),
                text: workflows,
            },
        ];
        let catalog = h.broker.catalog().await.unwrap();
        let policies = crate::domain::policy::Policies::load(&sources, &catalog).unwrap();
        let notify: crate::config::NotifyConfig =
            toml::from_str("[email]\nsmtp_host = \"localhost\"\nfrom = \"jitgate <jitgate@example.com>\"\n")
                .unwrap();
        let channels = crate::notify::channels::Channels::new(&notify, "https://j").unwrap();
        let broker = h.broker.with_policies("p".into(), policies);

        let agent = active_agent(&h).await;
        let s = broker.live.open_session(agent, aws(), "1".into(), t0());
        broker.live.close_session(agent, s.id);
        broker.record_contacts(&BTreeSet::new(), REFRESH).await.unwrap();
        assert_eq!(broker.warn_agents_offline(&channels, &watch()).await.unwrap(), 0);
        h.clock.advance(chrono::Duration::seconds(60));
        assert_eq!(broker.warn_agents_offline(&channels, &watch()).await.unwrap(), 2);
        let queued = broker.store.notifications().await.unwrap();
        let mut to: Vec<&str> = queued
            .iter()
            .map(|n| match &n.address {
                Address::Email { to, .. } => to.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        to.sort_unstable();
        assert_eq!(to, ["ops@example.com", "security@example.com"]);
        assert!(queued.iter().all(|n| n.event.kind == EventKind::AgentOffline));
        let about = queued[0].event.configuration.as_ref().unwrap();
        assert_eq!((&about.id, about.last_contact, about.agents), (&aws(), t0(), 1));
        // Later checks see the same episode: nothing new.
        h.clock.advance(chrono::Duration::seconds(600));
        assert_eq!(broker.warn_agents_offline(&channels, &watch()).await.unwrap(), 0);
    }
}
