//! Grants: opening and closing windows, leases and the commands they call
//! for, early end, extension, and the scheduled jobs that drive them.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{
    CreateRequestBody, EndReason, ExtendBody, ExtendOutcome, GrantState, GrantView, Page, RequestKind,
    RevokeBody, Role,
};
use jitgate_shared::v1::{GrantId, RequestId, UserId};

use super::requests::{principal_facts, resource_facts, sees_all};
use super::{retry_conflicts, Broker, ServiceError};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::grant::{Grant, GrantError};
use crate::domain::lease::{Lease, LeaseEffect};
use crate::domain::policy::{Action, RequestFacts};
use crate::domain::request::{check_ticket, NewRequest, Request};
use crate::domain::user::User;
use crate::outbox::command;
use crate::scheduler::jobs;
use crate::store::{Change, GrantFilter, PageQuery};

#[derive(Debug, Clone, Default)]
pub struct GrantQuery {
    pub state: Option<GrantState>,
    pub user: Option<UserId>,
    pub after: Option<GrantId>,
    pub limit: usize,
}

impl Broker {
    /// Turns an approved request into a grant (or, for an extension, extends
    /// the grant). Returns the request as it should be stored.
    pub(crate) async fn decide_approved(
        &self,
        request: Request,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Result<Request, ServiceError> {
        let actor = Actor::System;
        match request.kind {
            RequestKind::Extension { grant } => {
                let g = self
                    .store
                    .grant(grant)
                    .await?
                    .ok_or_else(|| ServiceError::not_found("grant", grant))?;
                let (resource, kind) = self.resource_and_kind(&g.resource).await?;
                let workflow = self.policies.current().workflow(&resource_facts(&resource, kind));
                // Eligibility again at approval: it may have gone since
                // the extension was asked for.
                self.still_eligible(
                    &g,
                    &resource,
                    kind,
                    request.duration_seconds,
                    request.ticket.is_some(),
                )
                .await?;
                self.extend_window(
                    g,
                    request.duration_seconds,
                    workflow.extension_max_total,
                    actor,
                    change,
                    now,
                )
                .await?;
                Ok(request)
            }
            RequestKind::Access => {
                let (resource, kind) = self.resource_and_kind(&request.resource).await?;
                let workflow = self.policies.current().workflow(&resource_facts(&resource, kind));
                let user = self
                    .store
                    .user(&request.requester)
                    .await?
                    .ok_or_else(|| ServiceError::not_found("user", &request.requester))?;
                // Resolved again at approval: the chain may have changed
                // since the request was made. The principal has not: it is
                // the one the approvers saw.
                let principal = if request.principal.is_empty() {
                    user.principal()
                } else {
                    request.principal.clone()
                };
                let (plan, provision_on_demand) = self
                    .plan_with_provisioning(&resource.resource, &principal)
                    .await?;
                let grant = Grant {
                    cap_session_duration: workflow.cap_session_duration,
                    end_sign_in_sessions: workflow.end_sign_in_sessions,
                    chain: plan.path.0,
                    confirm: plan.confirm,
                    provision_on_demand,
                    ..Grant::for_request(GrantId::generate(), &request, plan.apply, now)
                };
                change.audit.push(AuditEntry {
                    at: now,
                    actor: actor.clone(),
                    event: AuditEvent::GrantScheduled {
                        grant: grant.id,
                        request: request.id,
                        starts_at: grant.starts_at,
                        ends_at: grant.ends_at,
                    },
                });
                let starts_now = grant.should_start(now);
                let request = request.with_grant(grant.id, starts_now);
                if starts_now {
                    self.open_window(grant, change, now).await?;
                } else {
                    change.schedule.push(jobs::activate_grant(&grant));
                    change.grants.push(grant);
                }
                Ok(request)
            }
        }
    }

    /// Activates a grant: takes its lease, queues a grant command when it is
    /// the first holder, schedules the expiry.
    pub(crate) async fn open_window(
        &self,
        grant: Grant,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let grant = grant.activate();
        let lease = self
            .lease_as_staged(change, &grant.entitlement)
            .await?
            .unwrap_or_else(|| Lease::new(grant.entitlement.clone()));
        // Only a lease that was held before (generation > 0) can have a
        // revoke queued: a first grant pays no extra read.
        if !lease.is_held() && lease.generation > 0 {
            self.supersede_failing_revoke(&lease, &grant, change, now).await?;
        }
        let (lease, effect) = lease.hold(grant.id, grant.ends_at);
        let command = self.queue_command(&lease, effect, &grant, grant.starts_at, change, now);
        change.put_lease(lease);
        change.schedule.push(jobs::expire_grant(&grant));
        change.audit.push(AuditEntry {
            at: now,
            actor: Actor::System,
            event: AuditEvent::GrantActivated {
                grant: grant.id,
                configuration: grant.entitlement.configuration.clone(),
                entitlement: grant.entitlement.target.describe(),
                principal: grant.entitlement.principal.clone(),
                ends_at: grant.ends_at,
                command,
            },
        });
        change.grants.push(grant);
        self.metrics.grants_activated.inc();
        Ok(())
    }

    /// Ends a grant: releases its lease (queueing a revoke when it was the
    /// last holder) and removes its pending job.
    pub(crate) async fn close_window(
        &self,
        grant: Grant,
        reason: EndReason,
        by: Option<UserId>,
        actor: Actor,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let was = grant.state;
        let ended = grant.end(reason, by, now)?;
        let mut lease_still_held = false;
        let mut command = None;
        match was {
            GrantState::Active => {
                change.unschedule.push(jobs::expire_grant(&grant));
                if let Some(lease) = self.lease_as_staged(change, &grant.entitlement).await? {
                    let (lease, effect) = lease.release(grant.id);
                    lease_still_held = lease.is_held();
                    command = self.queue_command(&lease, effect, &grant, now, change, now);
                    change.put_lease(lease);
                }
            }
            GrantState::Scheduled => change.unschedule.push(jobs::activate_grant(&grant)),
            GrantState::Ended => {}
        }
        change.audit.push(AuditEntry {
            at: now,
            actor,
            event: AuditEvent::GrantEnded {
                grant: grant.id,
                configuration: grant.entitlement.configuration.clone(),
                reason,
                lease_still_held,
                command,
            },
        });
        change.grants.push(ended);
        self.metrics
            .grants_ended
            .get_or_create(&vec![("reason", format!("{reason:?}").to_lowercase())])
            .inc();
        Ok(())
    }

    /// Queues the command a lease change calls for; returns its id for the
    /// audit record of the grant transition that caused it.
    fn queue_command(
        &self,
        lease: &Lease,
        effect: LeaseEffect,
        grant: &Grant,
        not_before: DateTime<Utc>,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let command = command::for_effect(lease, effect, grant.id, not_before, now)?;
        let command = command::Command {
            cap_session_duration: command.op == jitgate_shared::v1::api::CommandOp::Grant
                && grant.cap_session_duration,
            end_sign_in_sessions: grant.end_sign_in_sessions,
            provision_on_demand: if command.op == jitgate_shared::v1::api::CommandOp::Grant {
                grant.provision_on_demand.clone()
            } else {
                None
            },
            ..command
        };
        self.metrics
            .commands_queued
            .get_or_create(&vec![("op", format!("{:?}", command.op).to_lowercase())])
            .inc();
        let id = command.id.clone();
        change.put_command(command);
        Some(id)
    }

    /// The holder of `grant`, if they may still request its resource (an
    /// extension is a new request of it); refused otherwise.
    async fn still_eligible(
        &self,
        grant: &Grant,
        resource: &crate::domain::catalog::StoredResource,
        kind: &str,
        duration_seconds: u64,
        has_ticket: bool,
    ) -> Result<User, ServiceError> {
        let owner = self
            .store
            .user(&grant.user)
            .await?
            .ok_or_else(|| ServiceError::not_found("user", &grant.user))?;
        let facts = RequestFacts {
            duration_seconds,
            break_glass: false,
            has_ticket,
            on_call: false,
        };
        let permitted = self.policies.current().permits(
            Action::Request,
            &principal_facts(&owner),
            &resource_facts(resource, kind),
            facts,
        );
        if owner.disabled || !permitted {
            return Err(GrantError::NoLongerEligible { user: owner.id }.into());
        }
        Ok(owner)
    }

    /// A new grant of an entitlement whose revoke keeps failing replaces
    /// that revoke in the outbox: the old grant stops saying so (audited).
    async fn supersede_failing_revoke(
        &self,
        lease: &Lease,
        by: &Grant,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let revoke = command::revoke_id(lease);
        let Some(queued) = self.store.queued_command(&revoke).await? else {
            return Ok(());
        };
        let failing = self
            .store
            .grant(queued.grant)
            .await?
            .filter(|g| g.revoke_failing.as_ref().is_some_and(|f| f.command == revoke));
        if let Some(old) = failing {
            change.audit.push(AuditEntry {
                at: now,
                actor: Actor::System,
                event: AuditEvent::RevokeSuperseded {
                    command: revoke,
                    grant: old.id,
                    by: by.id,
                },
            });
            change.grants.push(old.revoke_superseded());
        }
        Ok(())
    }

    /// The lease of `entitlement` as `change` leaves it so far: written
    /// earlier in the change, else as stored.
    async fn lease_as_staged(
        &self,
        change: &Change,
        entitlement: &jitgate_shared::v1::Entitlement,
    ) -> Result<Option<Lease>, ServiceError> {
        let key = Lease::key_for(entitlement);
        match change.lease(&key) {
            Some(staged) => Ok(Some(staged.clone())),
            None => Ok(self.store.lease(&key).await?),
        }
    }

    async fn extend_window(
        &self,
        grant: Grant,
        extra_seconds: u64,
        max_total: std::time::Duration,
        actor: Actor,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Result<Grant, ServiceError> {
        let extended = grant.extend(extra_seconds, max_total)?;
        change.unschedule.push(jobs::expire_grant(&grant));
        change.schedule.push(jobs::expire_grant(&extended));
        let lease = self
            .lease_as_staged(change, &grant.entitlement)
            .await?
            .unwrap_or_else(|| Lease::new(grant.entitlement.clone()));
        let (lease, effect) = lease.hold(grant.id, extended.ends_at);
        let command = self.queue_command(&lease, effect, &grant, grant.starts_at, change, now);
        change.put_lease(lease);
        change.audit.push(AuditEntry {
            at: now,
            actor,
            event: AuditEvent::GrantExtended {
                grant: grant.id,
                ends_at: extended.ends_at,
                command,
            },
        });
        change.grants.push(extended.clone());
        Ok(extended)
    }

    async fn own_grant(&self, actor: &User, id: GrantId) -> Result<Grant, ServiceError> {
        let grant = self
            .store
            .grant(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("grant", id))?;
        if grant.user != actor.id && !actor.has_role(Role::Admin) {
            if sees_all(actor) {
                return Err(GrantError::NotYours.into());
            }
            return Err(ServiceError::not_found("grant", id));
        }
        Ok(grant)
    }

    /// Ends a grant before its window closes (the holder or an admin).
    #[tracing::instrument(skip(self, actor, body), fields(user = %actor.id, grant = %id))]
    pub async fn revoke_grant(
        &self,
        actor: &User,
        id: GrantId,
        body: RevokeBody,
    ) -> Result<GrantView, ServiceError> {
        if let Some(reason) = &body.reason {
            tracing::info!(%reason, "early revoke");
        }
        retry_conflicts(|| async {
            let grant = self.own_grant(actor, id).await?;
            let now = self.clock.now();
            let reason = if grant.state == GrantState::Scheduled {
                EndReason::Cancelled
            } else {
                EndReason::Revoked
            };
            let mut change = Change::default();
            let request = self.store.request(grant.request).await?;
            self.close_window(
                grant,
                reason,
                Some(actor.id.clone()),
                Actor::User(actor.id.clone()),
                &mut change,
                now,
            )
            .await?;
            if let Some(r) = request {
                change.requests.push(r.ended(reason));
            }
            let view = change.grants.last().map(Grant::view);
            self.commit(change).await?;
            view.ok_or_else(|| ServiceError::not_found("grant", id))
        })
        .await
    }

    /// How many seconds each of `grants` may be extended by now, under
    /// its workflow as it stands (absent: the workflow allows none). Reads
    /// resources and configurations once, whatever the number of grants.
    pub async fn extension_room(
        &self,
        grants: &[jitgate_shared::v1::api::GrantView],
    ) -> Result<std::collections::BTreeMap<GrantId, u64>, ServiceError> {
        if grants.is_empty() {
            return Ok(Default::default());
        }
        let (resources, configurations) =
            tokio::try_join!(self.store.resources(), self.store.configurations())?;
        let policies = self.policies.current();
        let mut room = std::collections::BTreeMap::new();
        for g in grants.iter().filter(|g| g.state == GrantState::Active) {
            let Some(resource) = resources.iter().find(|r| r.resource.id == g.resource) else {
                continue;
            };
            let Some(config) = configurations
                .iter()
                .find(|c| c.config.id == resource.resource.configuration && c.config.enabled)
            else {
                continue;
            };
            let workflow = policies.workflow(&resource_facts(resource, config.config.kind.as_str()));
            if workflow.extension_allowed {
                let left = crate::domain::grant::extension_room(
                    g.starts_at,
                    g.ends_at,
                    workflow.extension_max_total,
                );
                room.insert(g.id, left);
            }
        }
        Ok(room)
    }

    /// Extends an active grant where the workflow allows: at once, or through
    /// an extension request when the workflow asks for re-approval.
    #[tracing::instrument(skip(self, actor, body), fields(user = %actor.id, grant = %id))]
    pub async fn extend_grant(
        &self,
        actor: &User,
        id: GrantId,
        body: ExtendBody,
    ) -> Result<ExtendOutcome, ServiceError> {
        let grant = self.own_grant(actor, id).await?;
        let (resource, kind) = self.resource_and_kind(&grant.resource).await?;
        let policies = self.policies.current();
        let workflow = policies.workflow(&resource_facts(&resource, kind));
        if !workflow.extension_allowed {
            return Err(GrantError::ExtensionNotAllowed.into());
        }
        if grant.state != GrantState::Active {
            return Err(GrantError::NotActive { state: grant.state }.into());
        }
        // Checked here too so a request that could never be applied is not
        // sent to approvers.
        grant.extend(body.duration_seconds, workflow.extension_max_total)?;
        let ticket = check_ticket(&workflow, body.ticket.as_deref())?;
        // Eligibility now, not when the grant was made: who lost it (a
        // group, a role, a policy change) cannot stretch their window.
        let owner = self
            .still_eligible(&grant, &resource, kind, body.duration_seconds, ticket.is_some())
            .await?;
        if workflow.extension_requires_approval {
            let ask = CreateRequestBody {
                resource: grant.resource.clone(),
                duration_seconds: Some(body.duration_seconds),
                justification: body.justification.clone(),
                ticket: ticket.map(str::to_owned),
                starts_at: None,
                break_glass: false,
            };
            let now = self.clock.now();
            let request = NewRequest {
                id: RequestId::generate(),
                kind: RequestKind::Extension { grant: grant.id },
                requester: &owner,
                body: &ask,
                workflow: &workflow,
                permitted: true,
                on_call: false,
                now,
            }
            .build()?;
            let view = self.commit_new_request(&owner, request, now).await?;
            return Ok(ExtendOutcome::PendingApproval { request: view });
        }
        let grant = retry_conflicts(|| async {
            let grant = self.own_grant(actor, id).await?;
            let now = self.clock.now();
            let mut change = Change::default();
            let g = self
                .extend_window(
                    grant,
                    body.duration_seconds,
                    workflow.extension_max_total,
                    Actor::User(actor.id.clone()),
                    &mut change,
                    now,
                )
                .await?;
            self.commit(change).await?;
            Ok(g)
        })
        .await?;
        Ok(ExtendOutcome::Extended { grant: grant.view() })
    }

    pub async fn get_grant(&self, actor: &User, id: GrantId) -> Result<GrantView, ServiceError> {
        let grant = self
            .store
            .grant(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("grant", id))?;
        if grant.user != actor.id && !sees_all(actor) {
            return Err(ServiceError::not_found("grant", id));
        }
        Ok(grant.view())
    }

    pub async fn list_grants(&self, actor: &User, q: GrantQuery) -> Result<Page<GrantView>, ServiceError> {
        let user = if sees_all(actor) {
            q.user.clone()
        } else {
            Some(actor.id.clone())
        };
        let page = PageQuery::new(q.after, q.limit);
        let filter = GrantFilter {
            user,
            states: q.state.into_iter().collect(),
            ..GrantFilter::default()
        };
        let items = self
            .store
            .grants(&page, &filter)
            .await?
            .iter()
            .map(Grant::view)
            .collect();
        Ok(super::page_of(items, &page, |g: &GrantView| g.id.to_string()))
    }
}
