//! Federated-directory chains in the service: the configuration graph as
//! the store has it, plans for requests and grants, `explain`, and the
//! check that a configuration change leaves every chain resolvable.

use std::collections::BTreeSet;

use jitgate_shared::v1::api::{AgentState, Configuration, ExplainView, PlanStep, Resource};
use jitgate_shared::v1::{ConfigId, Entitlement, ResourceId, UserId};

use super::{Broker, ServiceError};
use crate::domain::chain::{self, ConfigGraph, Plan};
use crate::domain::user::User;

impl Broker {
    /// Configurations as stored, with the ones that have an active agent.
    pub(crate) async fn config_graph(&self) -> Result<ConfigGraph, ServiceError> {
        let configurations = self.store.configurations().await?.into_iter().map(|c| c.config);
        let with_agents: BTreeSet<ConfigId> = self
            .store
            .agents()
            .await?
            .into_iter()
            .filter(|a| a.state == AgentState::Active)
            .map(|a| a.configuration)
            .collect();
        Ok(ConfigGraph::new(configurations, with_agents))
    }

    /// The plan for `user` and `resource`, or the chain error as a conflict
    /// naming the path.
    pub(crate) async fn plan_for(&self, resource: &Resource, user: &User) -> Result<Plan, ServiceError> {
        Ok(self.plan_with_provisioning(resource, &user.principal()).await?.0)
    }

    /// The plan, and the on-demand provisioning its grant asks for.
    pub(crate) async fn plan_with_provisioning(
        &self,
        resource: &Resource,
        principal: &str,
    ) -> Result<(Plan, Option<jitgate_shared::v1::signing::ProvisionOnDemand>), ServiceError> {
        let graph = self.config_graph().await?;
        let plan =
            chain::resolve(&graph, resource, principal).map_err(|e| ServiceError::Conflict(e.to_string()))?;
        let provisioning = chain::provisioning(&graph, &plan);
        Ok((plan, provisioning))
    }

    /// How `resource` would be elevated for `user`, without acting.
    #[tracing::instrument(skip(self, actor), fields(user = %actor.id))]
    pub async fn explain(
        &self,
        actor: &User,
        resource: &ResourceId,
        user: &UserId,
    ) -> Result<ExplainView, ServiceError> {
        super::admin::require_privileged(actor)?;
        let stored = self
            .store
            .resource(resource)
            .await?
            .ok_or_else(|| ServiceError::not_found("resource", resource))?;
        let subject = self
            .store
            .user(user)
            .await?
            .ok_or_else(|| ServiceError::not_found("user", user))?;
        let plan = self.plan_for(&stored.resource, &subject).await?;
        let agents = self.store.agents().await?;
        let step = |e: Entitlement| PlanStep {
            agents: agents
                .iter()
                .filter(|a| a.state == AgentState::Active && a.configuration == e.configuration)
                .map(|a| a.id)
                .collect(),
            entitlement: e,
        };
        Ok(ExplainView {
            resource: resource.clone(),
            user: user.clone(),
            chain: plan.path.0,
            apply: step(plan.apply),
            confirm: plan.confirm.into_iter().map(step).collect(),
        })
    }

    /// Refuses a configuration change that would form a cycle or a chain
    /// over the depth limit, or leave a resource with active grants
    /// without a way to resolve; the message names the path.
    pub(crate) async fn check_chains_after(&self, changed: &Configuration) -> Result<(), ServiceError> {
        let mut graph = self.config_graph().await?;
        graph.configurations.insert(changed.id.clone(), changed.clone());
        chain::check_links(&graph).map_err(|e| ServiceError::Conflict(e.to_string()))?;
        let in_use: BTreeSet<ResourceId> = self
            .grants_where(&crate::store::GrantFilter::open())
            .await?
            .into_iter()
            .map(|g| g.resource)
            .collect();
        // Agents may come and go; what a change must not do is leave a
        // resource in use with no mapping or a missing link.
        let mut all_agents = graph.clone();
        all_agents.with_agents = graph.configurations.keys().cloned().collect();
        for stored in self.store.resources().await? {
            let r = &stored.resource;
            if !in_use.contains(&r.id) {
                continue;
            }
            let path = graph
                .walk(&r.configuration)
                .map_err(|e| ServiceError::Conflict(e.to_string()))?;
            if !path.0.contains(&changed.id) {
                continue;
            }
            if let Err(e) = chain::resolve(&all_agents, r, "check") {
                return Err(ServiceError::Conflict(format!(
                    "configuration `{}` would orphan resource `{}`, which has active grants: {e}",
                    changed.id, r.id
                )));
            }
        }
        Ok(())
    }
}

/// How long after its end a federated grant's removal is still checked
/// downstream; past it, an unconfirmed removal stays unconfirmed (and
/// drift checks take over).
const REMOVAL_CHECK_WINDOW: chrono::Duration = chrono::Duration::days(1);

impl Broker {
    /// Federated grants whose downstream entitlement an agent of
    /// `configuration` should check now.
    async fn grants_awaiting_check(
        &self,
        configuration: &ConfigId,
    ) -> Result<Vec<crate::domain::grant::Grant>, ServiceError> {
        let since = self.clock.now() - REMOVAL_CHECK_WINDOW;
        self.grants_where(&crate::store::GrantFilter {
            awaiting_check_in: Some(configuration.clone()),
            ended_since: Some(since),
            ..Default::default()
        })
        .await
    }

    /// What an agent of `configuration` should check: downstream
    /// entitlements of federated grants awaiting confirmation there.
    pub async fn awaiting_confirmation(
        &self,
        configuration: &ConfigId,
    ) -> Result<Vec<Entitlement>, ServiceError> {
        let mut wanted: Vec<Entitlement> = self
            .grants_awaiting_check(configuration)
            .await?
            .iter()
            .filter_map(|g| g.awaiting_check(configuration).cloned())
            .collect();
        wanted.sort();
        wanted.dedup();
        Ok(wanted)
    }

    /// Records an agent's `Holdings`: federated grants whose downstream
    /// entitlement is now held become effective; those removed in the
    /// directory whose downstream entitlement is gone are confirmed gone.
    #[tracing::instrument(skip(self, held, absent), fields(held = held.len(), absent = absent.len()))]
    pub async fn record_holdings(
        &self,
        agent: jitgate_shared::v1::AgentId,
        configuration: &ConfigId,
        held: &[Entitlement],
        absent: &[Entitlement],
    ) -> Result<(), ServiceError> {
        use crate::audit::{Actor, AuditEntry, AuditEvent};
        let answered = super::retry_conflicts(|| async {
            let now = self.clock.now();
            let mut answered = 0u64;
            let mut change = crate::store::Change::default();
            for grant in self.grants_awaiting_check(configuration).await? {
                let Some(e) = grant.awaiting_check(configuration) else {
                    continue;
                };
                let answer = if held.contains(e) {
                    true
                } else if absent.contains(e) {
                    false
                } else {
                    continue;
                };
                answered += 1;
                let Some(g) = grant.record_check(answer, now) else {
                    continue;
                };
                let event = if answer {
                    AuditEvent::GrantEffective {
                        grant: g.id,
                        agent,
                        configuration: configuration.clone(),
                    }
                } else {
                    AuditEvent::GrantRemovalConfirmed {
                        grant: g.id,
                        agent,
                        configuration: configuration.clone(),
                    }
                };
                tracing::info!(grant = %g.id, %configuration, effective = answer, "downstream confirmation");
                change.audit.push(AuditEntry {
                    at: now,
                    actor: Actor::System,
                    event,
                });
                change.grants.push(g);
            }
            if !change.grants.is_empty() {
                self.commit(change).await?;
            }
            Ok(answered)
        })
        .await?;
        self.metrics.downstream_answers.inc_by(answered);
        Ok(())
    }
}
