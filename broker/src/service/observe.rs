//! What the store holds now, for the store-wide gauges of `/metrics`:
//! grants active, each configuration's outbox, agent certificates. Read at
//! each scrape, so every broker sharing a store shows the same figures.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{AgentState, CommandOp};
use jitgate_shared::v1::ConfigId;

use super::{Broker, ServiceError};
use crate::domain::lease::Lease;
use crate::metrics::{ConfigurationGauges, StoreGauges};
use crate::outbox::command::Command;

impl Broker {
    /// Reads the store-wide gauges from the store and sets them. The reads
    /// are bounded by what is held now: a configuration's held leases, and
    /// its outbox (at most one command per entitlement).
    #[tracing::instrument(skip(self))]
    pub async fn observe(&self) -> Result<(), ServiceError> {
        let now = self.clock.now();
        // The first active agent certificate of each configuration to expire.
        let mut first_expiry: HashMap<ConfigId, DateTime<Utc>> = HashMap::new();
        for agent in self.store.agents().await? {
            if agent.state == AgentState::Active {
                first_expiry
                    .entry(agent.configuration)
                    .and_modify(|t| *t = (*t).min(agent.certificate_not_after))
                    .or_insert(agent.certificate_not_after);
            }
        }
        let mut observed = StoreGauges::default();
        for stored in self.store.configurations().await? {
            let id = stored.config.id;
            let leases = self.store.held_leases(&id).await?;
            let outbox = self.store.outbox(&id, usize::MAX).await?;
            let gauges = configuration_gauges(&leases, &outbox, first_expiry.get(&id).copied(), now);
            observed.configurations.insert(id.to_string(), gauges);
        }
        self.metrics.set_store_gauges(&observed);
        Ok(())
    }
}

/// One configuration's gauges from its held leases, its outbox and when
/// its first agent certificate expires.
fn configuration_gauges(
    leases: &[Lease],
    outbox: &[Command],
    first_agent_certificate_expiry: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ConfigurationGauges {
    // A grant may hold several entitlements; it is one grant.
    let holders: BTreeSet<_> = leases.iter().flat_map(|l| l.holders.keys()).collect();
    let oldest = outbox.iter().map(|c| c.issued_at).min();
    ConfigurationGauges {
        grants_active: count(holders.len()),
        outbox_depth: count(outbox.len()),
        revokes_queued: count(outbox.iter().filter(|c| c.op == CommandOp::Revoke).count()),
        outbox_oldest_age_seconds: oldest
            .map_or(0.0, |t| (now - t).to_std().unwrap_or_default().as_secs_f64()),
        first_agent_certificate_expiry,
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use jitgate_shared::v1::GrantId;

    use super::*;
    use crate::testing::{command, t0};

    /// A lease on `group` held by `holders`.
    fn lease(group: &str, holders: &[GrantId]) -> Lease {
        let entitlement = command("c", group, CommandOp::Grant).entitlement;
        Lease {
            key: Lease::key_for(&entitlement),
            version: 1,
            entitlement,
            holders: holders.iter().map(|g| (*g, t0())).collect(),
            generation: 1,
        }
    }

    #[test]
    fn a_grant_counts_once_and_the_oldest_command_gives_the_age() {
        let (a, b) = (GrantId::generate(), GrantId::generate());
        let leases = [lease("admins", &[a, b]), lease("auditors", &[a])];
        let revoke = command("r", "admins", CommandOp::Revoke);
        let mut grant = command("g", "auditors", CommandOp::Grant);
        grant.issued_at = revoke.issued_at + Duration::seconds(85);
        let now = revoke.issued_at + Duration::seconds(90);
        let g = configuration_gauges(&leases, &[grant, revoke], None, now);
        assert_eq!(g.grants_active, 2);
        assert_eq!(g.outbox_depth, 2);
        assert_eq!(g.revokes_queued, 1);
        assert!((g.outbox_oldest_age_seconds - 90.0).abs() < 0.001, "{g:?}");
    }

    #[test]
    fn nothing_held_or_queued_is_all_zero() {
        let g = configuration_gauges(&[], &[], None, t0());
        assert_eq!(g, ConfigurationGauges::default());
    }
}
