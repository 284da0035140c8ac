//! What agents tell the broker: answers to commands, entitlements they
//! removed on their own at a deadline, inventories for reconciliation, and
//! requests for a fresh certificate. Each is stored (and flushed) before
//! the agent hears back.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{CommandOp, DriftReport};
use jitgate_shared::v1::protocol::{FailureKind, Outcome};
use jitgate_shared::v1::{AgentId, ConfigId, Entitlement, GrantId, Target};

use super::{retry_conflicts, Broker, ServiceError};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::drift;
use crate::domain::grant::Grant;
use crate::domain::lease::Lease;
use crate::outbox::answer::{self, Answered, CommandResult};
use crate::outbox::command::{Command, REVOKE_VALIDITY};
use crate::store::Change;
use crate::tls::agent::AgentIdentity;

/// A `SelfRevoked` report, as the hub received it.
#[derive(Debug, Clone)]
pub struct SelfRevoke {
    pub command: String,
    pub grant: GrantId,
    pub entitlement: Entitlement,
    pub deadline: DateTime<Utc>,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
}

impl Broker {
    /// What an agent answered for `command`, stored as its disposition
    /// calls for: [`Broker::answer_commands`] with one answer.
    pub async fn answer_command(
        &self,
        agent: AgentId,
        command: &Command,
        outcome: Outcome,
    ) -> Result<Answered, ServiceError> {
        let stored = self
            .answer_commands(agent, vec![(command.clone(), outcome)])
            .await;
        stored.into_iter().next().map_or_else(unstored, |(_, r)| r)
    }

    /// What an agent answered for each command, stored as its disposition
    /// calls for: every final answer in one durable change (a session's
    /// answers share a commit), revokes that keep failing one by one,
    /// answers worth retrying not at all. Gives each command back with
    /// what became of it, in the order given. The one place the hub (and
    /// the model test of the promises) hands answers to.
    pub async fn answer_commands(
        &self,
        agent: AgentId,
        answers: Vec<(Command, Outcome)>,
    ) -> Vec<(Command, Result<Answered, ServiceError>)> {
        let mut settled = Vec::new();
        let mut done: Vec<Option<Result<Answered, ServiceError>>> = Vec::with_capacity(answers.len());
        for (i, (command, outcome)) in answers.iter().enumerate() {
            if let Some(kind) = outcome.failure() {
                self.metrics
                    .command_failures
                    .get_or_create(&vec![
                        ("configuration", command.entitlement.configuration.to_string()),
                        ("kind", failure_label(kind).to_owned()),
                    ])
                    .inc();
            }
            done.push(match answer::disposition(command.op, outcome) {
                answer::Disposition::Settled => {
                    settled.push(i);
                    None
                }
                answer::Disposition::Retry { after } => Some(Ok(Answered::Retry { after })),
                answer::Disposition::RevokeFailing { reason } => Some(
                    self.revoke_failed(agent, command, &reason, outcome.clone())
                        .await
                        .map(|attempts| Answered::RevokeFailing { attempts }),
                ),
            });
        }
        if !settled.is_empty() {
            let batch: Vec<(&Command, &Outcome)> =
                settled.iter().map(|&i| (&answers[i].0, &answers[i].1)).collect();
            let stored = self.settle_commands(agent, &batch).await;
            for &i in &settled {
                done[i] = Some(stored.clone().map(|()| Answered::Settled));
            }
        }
        answers
            .into_iter()
            .zip(done)
            .map(|((command, _), done)| (command, done.unwrap_or_else(unstored)))
            .collect()
    }

    /// Records that a revoke was refused or failed for good: it stays on
    /// the outbox, its grant says `revoke_failing`, the first failure is
    /// audited and counted in the `revokes_failing` gauge. Returns how many
    /// times it has failed.
    #[tracing::instrument(skip(self, command, outcome), fields(command = %command.id, grant = %command.grant))]
    async fn revoke_failed(
        &self,
        agent: AgentId,
        command: &Command,
        reason: &str,
        outcome: Outcome,
    ) -> Result<u32, ServiceError> {
        let (attempts, first) = retry_conflicts(|| async {
            let now = self.clock.now();
            let mut change = Change::default();
            let Some(grant) = self.store.grant(command.grant).await? else {
                // A revoke of drift (no grant): audited each time.
                change
                    .audit
                    .push(revoke_failed_audit(agent, command, &outcome, now));
                self.commit(change).await?;
                return Ok((1, false));
            };
            let first = grant
                .revoke_failing
                .as_ref()
                .is_none_or(|f| f.command != command.id);
            let failed = grant.revoke_failed(&command.id, reason, now);
            let attempts = failed.revoke_failing.as_ref().map_or(1, |f| f.attempts);
            if first {
                change
                    .audit
                    .push(revoke_failed_audit(agent, command, &outcome, now));
            }
            change.grants.push(failed);
            self.commit(change).await?;
            Ok((attempts, first))
        })
        .await?;
        if first {
            self.metrics.revokes_failing.inc();
        }
        tracing::error!(
            attempts,
            %reason,
            entitlement = %command.entitlement.target.describe(),
            principal = %command.entitlement.principal,
            "revoke failed; it stays queued and is tried again until it succeeds or an admin force-closes it"
        );
        Ok(attempts)
    }

    /// Stores an agent's final answers: for each, the result record, the
    /// command off the outbox and the grant's delivery fields; all in one
    /// durable change.
    #[tracing::instrument(skip(self, answers), fields(answers = answers.len()))]
    async fn settle_commands(
        &self,
        agent: AgentId,
        answers: &[(&Command, &Outcome)],
    ) -> Result<(), ServiceError> {
        let (recovered, removed_late) = retry_conflicts(|| async {
            let mut recovered = 0usize;
            // How late each grant's access ended, for those this change
            // confirms gone.
            let mut removed_late = Vec::new();
            let now = self.clock.now();
            let mut change = Change::default();
            // The grants this change writes, as it leaves them.
            let mut written: HashMap<GrantId, Grant> = HashMap::new();
            for (command, outcome) in answers {
                let grant = match written.get(&command.grant) {
                    Some(staged) => Some(staged.clone()),
                    None => self.store.grant(command.grant).await?,
                };
                if let Some(grant) = grant {
                    if let Some(g) = grant.record_delivery(command.op, outcome, now) {
                        if grant.revoke_failing.is_some() && g.revoke_failing.is_none() {
                            recovered += 1;
                        }
                        if grant.removed_at.is_none() {
                            if let Some(removed) = g.removed_at {
                                removed_late.push(g.lateness_of(removed));
                            }
                        }
                        written.insert(command.grant, g);
                    }
                }
                change.results.push(CommandResult {
                    command: command.id.clone(),
                    configuration: command.entitlement.configuration.clone(),
                    grant: command.grant,
                    op: command.op,
                    agent,
                    outcome: (*outcome).clone(),
                    at: now,
                });
                change.delivered.push(command.id.clone());
                change.audit.push(AuditEntry {
                    at: now,
                    actor: Actor::System,
                    event: AuditEvent::CommandSettled {
                        command: command.id.clone(),
                        agent,
                        grant: command.grant,
                        op: command.op,
                        outcome: (*outcome).clone(),
                    },
                });
            }
            change.grants.extend(written.into_values());
            self.commit(change).await?;
            Ok((recovered, removed_late))
        })
        .await?;
        for _ in 0..recovered {
            self.metrics.revokes_failing.dec();
        }
        for late in removed_late {
            self.metrics.revoke_lateness.observe(late);
        }
        for (command, outcome) in answers {
            let ok = answer::succeeded(outcome);
            self.metrics
                .commands_settled
                .get_or_create(&vec![
                    ("op", format!("{:?}", command.op).to_lowercase()),
                    ("result", if ok { "ok" } else { "error" }.to_owned()),
                ])
                .inc();
            if !ok {
                tracing::warn!(command = %command.id, ?outcome, "agent could not carry out a command");
            }
        }
        Ok(())
    }

    /// Records that an agent removed an entitlement at its deadline without
    /// the broker's revoke. A report must be of the agent's configuration
    /// and name a grant of that entitlement: a confused or hostile agent
    /// cannot mark another tenant's or another grant's access removed.
    #[tracing::instrument(skip(self, report), fields(agent = %identity.agent, command = %report.command))]
    pub async fn record_self_revoke(
        &self,
        identity: &AgentIdentity,
        report: SelfRevoke,
    ) -> Result<(), ServiceError> {
        let agent = identity.agent;
        if report.entitlement.configuration != identity.configuration {
            return Err(ServiceError::Forbidden(format!(
                "self-revoke report for configuration `{}` from an agent of `{}`",
                report.entitlement.configuration, identity.configuration
            )));
        }
        let removed_late = retry_conflicts(|| async {
            let now = self.clock.now();
            let mut change = Change::default();
            let mut removed_late = None;
            let grant = self.store.grant(report.grant).await?;
            if grant.as_ref().is_none_or(|g| g.entitlement != report.entitlement) {
                return Err(ServiceError::Forbidden(format!(
                    "self-revoke report names grant {} with an entitlement it does not hold",
                    report.grant
                )));
            }
            let lease = self.store.lease(&Lease::key_for(&report.entitlement)).await?;
            let still_held = lease.is_some_and(|l| l.is_held());
            if !still_held {
                if let Some(grant) = grant {
                    if let Some(g) = grant.record_delivery(CommandOp::Revoke, &report.outcome, report.at) {
                        if grant.removed_at.is_none() {
                            removed_late = g.removed_at.map(|removed| g.lateness_of(removed));
                        }
                        change.grants.push(g);
                    }
                }
            }
            change.audit.push(AuditEntry {
                at: now,
                actor: Actor::System,
                event: AuditEvent::AgentSelfRevoked {
                    agent,
                    command: report.command.clone(),
                    grant: report.grant,
                    entitlement: report.entitlement.target.describe(),
                    principal: report.entitlement.principal.clone(),
                    deadline: report.deadline,
                    at: report.at,
                    outcome: report.outcome.clone(),
                },
            });
            self.commit(change).await?;
            Ok(removed_late)
        })
        .await?;
        self.metrics.agent_self_revokes.inc();
        if let Some(late) = removed_late {
            self.metrics.revoke_lateness.observe(late);
        }
        tracing::warn!(%agent, grant = %report.grant, "agent revoked an entitlement on its own at the deadline");
        Ok(())
    }

    /// The targets jitgate manages in a configuration: those of its resources.
    pub async fn targets_of(&self, configuration: &ConfigId) -> Result<Vec<Target>, ServiceError> {
        let targets: BTreeSet<Target> = self
            .store
            .resources()
            .await?
            .into_iter()
            .filter(|r| &r.resource.configuration == configuration)
            .map(|r| r.resource.target)
            .collect();
        Ok(targets.into_iter().collect())
    }

    /// Compares an agent's inventory with the held leases and records the
    /// drift; when the broker is set to, queues revokes for what jitgate did
    /// not grant.
    #[tracing::instrument(skip(self, found), fields(entitlements = found.len()))]
    pub async fn reconcile(
        &self,
        agent: AgentId,
        configuration: &ConfigId,
        found: Vec<Entitlement>,
    ) -> Result<DriftReport, ServiceError> {
        let now = self.clock.now();
        let outbox = self.live.outbox(configuration);
        let mut pending: BTreeSet<Entitlement> = self
            .store
            .outbox(configuration, usize::MAX)
            .await?
            .into_iter()
            .map(|c| c.entitlement)
            .collect();
        let mut granted = BTreeSet::new();
        for lease in self.store.held_leases(configuration).await? {
            if outbox.in_flight(&lease.key) {
                pending.insert(lease.entitlement.clone());
            }
            granted.insert(lease.entitlement);
        }
        // Only what this configuration owns counts: a confused agent cannot
        // make the broker revoke elsewhere.
        let found: BTreeSet<Entitlement> = found
            .into_iter()
            .filter(|e| &e.configuration == configuration)
            .collect();
        let drift = drift::drift(&granted, &found, &pending);
        // What jitgate granted once (its lease exists) and no grant holds
        // any more must go, whatever `remove_unexpected` says: its revoke
        // was lost, force-closed too early, or undone by hand in the
        // tenant.
        let remove = self.settings.remove_unexpected;
        let mut revoking: Vec<&Entitlement> = Vec::new();
        for e in &drift.unexpected {
            if remove || self.store.lease(&Lease::key_for(e)).await?.is_some() {
                revoking.push(e);
            }
        }
        let report = DriftReport {
            checked_at: now,
            unexpected: drift.unexpected.clone(),
            missing: drift.missing.clone(),
            removing_unexpected: !revoking.is_empty(),
        };
        if !drift.unexpected.is_empty() || !drift.missing.is_empty() {
            let describe = |es: &[Entitlement]| {
                es.iter()
                    .map(|e| format!("{} for {}", e.target.describe(), e.principal))
                    .collect::<Vec<_>>()
            };
            let mut change = Change::default();
            change.audit.push(AuditEntry {
                at: now,
                actor: Actor::System,
                event: AuditEvent::DriftFound {
                    agent,
                    configuration: configuration.clone(),
                    unexpected: describe(&drift.unexpected),
                    missing: describe(&drift.missing),
                    removing_unexpected: report.removing_unexpected,
                },
            });
            for e in revoking {
                change.put_command(Command {
                    id: format!("{}-drift-{}", Lease::key_for(e), now.timestamp_millis()),
                    op: CommandOp::Revoke,
                    grant: GrantId::from_uuid(uuid::Uuid::nil()),
                    entitlement: e.clone(),
                    not_before: now,
                    not_after: now + REVOKE_VALIDITY,
                    issued_at: now,
                    cap_session_duration: false,
                    end_sign_in_sessions: false,
                    provision_on_demand: None,
                });
            }
            self.commit(change).await?;
            tracing::warn!(
                %agent,
                unexpected = drift.unexpected.len(),
                missing = drift.missing.len(),
                removing = report.removing_unexpected,
                "tenant differs from the grants"
            );
        }
        self.live.record_drift(agent, report.clone());
        Ok(report)
    }

    /// Signs a new client certificate for a connected agent, from a CSR sent
    /// over its authenticated session.
    #[tracing::instrument(skip(self, csr_pem), fields(agent = %identity.agent))]
    pub async fn renew_agent_cert(
        &self,
        identity: &AgentIdentity,
        csr_pem: &str,
    ) -> Result<(String, DateTime<Utc>), ServiceError> {
        let ca = &self.keys()?.ca;
        retry_conflicts(|| async {
            let mut agent = self.admit_agent(identity).await?;
            let now = self.clock.now();
            let ttl = self.settings.agent_cert_ttl;
            let pem = ca
                .issue_agent_cert(csr_pem, identity, now, ttl)
                .map_err(|e| ServiceError::invalid("csr_pem", e.to_string()))?;
            agent.certificate_not_after = now + ttl;
            let mut change = Change::default();
            change.audit.push(AuditEntry {
                at: now,
                actor: Actor::System,
                event: AuditEvent::AgentCertificateRenewed {
                    agent: identity.agent,
                    certificate_not_after: agent.certificate_not_after,
                },
            });
            let not_after = agent.certificate_not_after;
            change.agents.push(agent);
            self.commit(change).await?;
            Ok((pem, not_after))
        })
        .await
    }
}

/// Every answer is given a disposition above; this names the bug if not.
fn unstored() -> Result<Answered, ServiceError> {
    Err(ServiceError::Unavailable(
        "an answer was given no disposition".into(),
    ))
}

fn revoke_failed_audit(
    agent: AgentId,
    command: &Command,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: Actor::System,
        event: AuditEvent::RevokeFailed {
            command: command.id.clone(),
            agent,
            grant: command.grant,
            entitlement: command.entitlement.target.describe(),
            principal: command.entitlement.principal.clone(),
            outcome: outcome.clone(),
        },
    }
}

/// A failure kind as the `command_failures` metric labels it.
fn failure_label(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Transport => "transport",
        FailureKind::Unauthorised => "unauthorised",
        FailureKind::Throttled => "throttled",
        FailureKind::Busy => "busy",
        FailureKind::NotFound => "not_found",
        FailureKind::Rejected => "rejected",
    }
}
