//! Requests as people see them: ask, review, cancel, read.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{
    CreateRequestBody, Decision, Identified, Page, RequestKind, RequestState, RequestView, ReviewBody, Role,
};
use jitgate_shared::v1::{GrantId, RequestId, UserId};

use super::{retry_conflicts, Broker, ServiceError};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::catalog::StoredResource;
use crate::domain::policy::{Action, PrincipalFacts, RequestFacts, ResourceFacts};
use crate::domain::request::{NewRequest, PersonsNow, Request, ReviewOutcome, Reviewer};
use crate::domain::user::User;
use crate::scheduler::jobs;
use crate::store::{Change, Committed, PageQuery, RequestFilter};

/// Filters for listing requests.
#[derive(Debug, Clone, Default)]
pub struct RequestQuery {
    pub state: Option<RequestState>,
    pub requester: Option<UserId>,
    pub after: Option<RequestId>,
    pub limit: usize,
}

pub(crate) fn principal_facts(user: &User) -> PrincipalFacts<'_> {
    PrincipalFacts {
        user: user.id.as_str(),
        email: user.email.as_deref().unwrap_or(""),
        person: &user.person,
        roles: &user.roles,
        groups: &user.groups,
    }
}

pub(crate) fn resource_facts<'a>(r: &'a StoredResource, kind: &'a str) -> ResourceFacts<'a> {
    ResourceFacts {
        resource: r.resource.id.as_str(),
        group: r.resource.group.as_deref(),
        configuration: r.resource.configuration.as_str(),
        kind,
    }
}

pub(crate) fn audit(at: DateTime<Utc>, actor: &User, event: AuditEvent) -> AuditEntry {
    AuditEntry {
        at,
        actor: Actor::User(actor.id.clone()),
        event,
    }
}

/// Who may see every request and grant, not only their own.
pub(crate) fn sees_all(user: &User) -> bool {
    [Role::Approver, Role::Admin, Role::Auditor]
        .iter()
        .any(|r| user.has_role(*r))
}

impl Broker {
    pub(crate) async fn resource_and_kind(
        &self,
        id: &jitgate_shared::v1::ResourceId,
    ) -> Result<(StoredResource, &'static str), ServiceError> {
        let resource = self
            .store
            .resource(id)
            .await?
            .ok_or_else(|| ServiceError::invalid("resource", format!("unknown resource `{id}`")))?;
        let config = self
            .store
            .configuration(&resource.resource.configuration)
            .await?
            .ok_or_else(|| ServiceError::not_found("configuration", &resource.resource.configuration))?;
        if !config.config.enabled {
            return Err(ServiceError::Conflict(format!(
                "configuration `{}` of resource `{id}` is disabled",
                config.config.id
            )));
        }
        Ok((resource, config.config.kind.as_str()))
    }

    /// A new access request. Auto-approved and break-glass requests become
    /// grants in the same durable step.
    #[tracing::instrument(skip(self, actor, body), fields(user = %actor.id, resource = %body.resource))]
    pub async fn create_request(
        &self,
        actor: &User,
        body: CreateRequestBody,
    ) -> Result<RequestView, ServiceError> {
        if !actor.has_role(Role::Requester) {
            return Err(ServiceError::Forbidden(format!(
                "{} does not have the `requester` role",
                actor.id
            )));
        }
        let (resource, kind) = self.resource_and_kind(&body.resource).await?;
        // A chain that cannot resolve is refused now, naming its path,
        // rather than after approval.
        self.plan_for(&resource.resource, actor).await?;
        let policies = self.policies.current();
        let workflow = policies.workflow(&resource_facts(&resource, kind));
        // Who is on call on the workflow's schedule: a failed lookup is
        // "no", so it never approves.
        let on_call = match &workflow.on_call {
            Some(schedule) => self.on_call.is_on_call(schedule, actor).await,
            None => false,
        };
        let now = self.clock.now();
        let draft = NewRequest {
            id: RequestId::generate(),
            kind: RequestKind::Access,
            requester: actor,
            body: &body,
            workflow: &workflow,
            permitted: false,
            on_call,
            now,
        };
        let facts = RequestFacts {
            duration_seconds: draft.duration_seconds(),
            break_glass: body.break_glass,
            has_ticket: body.ticket.as_deref().is_some_and(|t| !t.trim().is_empty()),
            on_call,
        };
        let action = if body.break_glass {
            Action::BreakGlass
        } else {
            Action::Request
        };
        let permitted = policies.permits(
            action,
            &principal_facts(actor),
            &resource_facts(&resource, kind),
            facts,
        );
        let request = NewRequest { permitted, ..draft }.build()?;
        let view = self.commit_new_request(actor, request, now).await?;
        self.metrics.requests_created.inc();
        Ok(view)
    }

    pub(crate) async fn commit_new_request(
        &self,
        actor: &User,
        request: Request,
        now: DateTime<Utc>,
    ) -> Result<RequestView, ServiceError> {
        let mut change = Change::default();
        change.audit.push(audit(
            now,
            actor,
            AuditEvent::RequestCreated {
                request: request.id,
                resource: request.resource.clone(),
                duration_seconds: request.duration_seconds,
                justification: request.justification.clone(),
                ticket: request.ticket.clone(),
                break_glass: request.break_glass,
                on_call: request.on_call,
            },
        ));
        let request = if request.state == RequestState::Approved {
            if request.break_glass {
                tracing::warn!(request = %request.id, user = %actor.id, resource = %request.resource, "break-glass access taken without approval");
                change.audit.push(audit(
                    now,
                    actor,
                    AuditEvent::BreakGlassUsed {
                        request: request.id,
                        resource: request.resource.clone(),
                    },
                ));
            }
            change.audit.push(audit(
                now,
                actor,
                AuditEvent::RequestApproved { request: request.id },
            ));
            self.decide_approved(request, &mut change, now).await?
        } else {
            change.schedule.push(jobs::expire_pending(&request));
            request
        };
        let view = request.view();
        change.requests.push(request);
        self.commit(change).await?;
        Ok(view)
    }

    /// Approve or deny. Of racing reviews, each is decided against the state
    /// the one before it left.
    #[tracing::instrument(skip(self, actor, body), fields(user = %actor.id, request = %id, ?decision))]
    pub async fn review_request(
        &self,
        actor: &User,
        id: RequestId,
        decision: Decision,
        body: ReviewBody,
    ) -> Result<RequestView, ServiceError> {
        let view = retry_conflicts(|| self.review_once(actor, id, decision, body.comment.clone())).await?;
        self.metrics
            .reviews
            .get_or_create(&vec![("decision", decision_label(decision))])
            .inc();
        Ok(view)
    }

    async fn review_once(
        &self,
        actor: &User,
        id: RequestId,
        decision: Decision,
        comment: Option<String>,
    ) -> Result<RequestView, ServiceError> {
        let request = self
            .store
            .request(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("request", id))?;
        let (resource, kind) = self.resource_and_kind(&request.resource).await?;
        let facts = RequestFacts {
            duration_seconds: request.duration_seconds,
            break_glass: request.break_glass,
            has_ticket: request.ticket.is_some(),
            on_call: false,
        };
        let may_approve = actor.has_role(Role::Approver)
            && self.policies.current().permits(
                Action::Approve,
                &principal_facts(actor),
                &resource_facts(&resource, kind),
                facts,
            );
        let reviewer = Reviewer {
            id: &actor.id,
            keys: actor.person_keys(),
            may_approve,
        };
        let mut now_keys = PersonsNow::new();
        for account in request.accounts_involved() {
            if let Some(u) = self.store.user(account).await? {
                now_keys.insert(u.id.clone(), u.person_keys());
            }
        }
        let now = self.clock.now();
        let (next, outcome) = request.review(&reviewer, &now_keys, decision, comment.clone(), now)?;
        let mut change = Change::default();
        change.audit.push(audit(
            now,
            actor,
            AuditEvent::RequestReviewed {
                request: id,
                decision,
                comment,
            },
        ));
        let next = match outcome {
            ReviewOutcome::StillPending { .. } => next,
            ReviewOutcome::Denied => {
                change.unschedule.push(jobs::expire_pending(&next));
                change
                    .audit
                    .push(audit(now, actor, AuditEvent::RequestDenied { request: id }));
                next
            }
            ReviewOutcome::Approved => {
                change.unschedule.push(jobs::expire_pending(&next));
                change
                    .audit
                    .push(audit(now, actor, AuditEvent::RequestApproved { request: id }));
                self.decide_approved(next, &mut change, now).await?
            }
        };
        let view = next.view();
        change.requests.push(next);
        self.commit(change).await?;
        Ok(view)
    }

    #[tracing::instrument(skip(self, actor), fields(user = %actor.id, request = %id))]
    pub async fn cancel_request(&self, actor: &User, id: RequestId) -> Result<RequestView, ServiceError> {
        retry_conflicts(|| async {
            let request = self
                .store
                .request(id)
                .await?
                .ok_or_else(|| ServiceError::not_found("request", id))?;
            let now = self.clock.now();
            let next = request.cancel(&actor.id, actor.has_role(Role::Admin))?;
            let mut change = Change::default();
            change.unschedule.push(jobs::expire_pending(&next));
            if let Some(grant_id) = next.grant {
                // Approved but not yet started: the scheduled grant goes too.
                if let Some(grant) = self.store.grant(grant_id).await? {
                    self.close_window(
                        grant,
                        jitgate_shared::v1::api::EndReason::Cancelled,
                        Some(actor.id.clone()),
                        Actor::User(actor.id.clone()),
                        &mut change,
                        now,
                    )
                    .await?;
                }
            }
            change
                .audit
                .push(audit(now, actor, AuditEvent::RequestCancelled { request: id }));
            let view = next.view();
            change.requests.push(next);
            self.commit(change).await?;
            Ok(view)
        })
        .await
    }

    pub async fn get_request(&self, actor: &User, id: RequestId) -> Result<RequestView, ServiceError> {
        let request = self
            .store
            .request(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("request", id))?;
        if request.requester != actor.id && !sees_all(actor) {
            // Same answer as a missing request: ids of others' requests are
            // not confirmed.
            return Err(ServiceError::not_found("request", id));
        }
        Ok(request.view())
    }

    /// What `id` names, as `actor` may see it: a request or a grant (ids
    /// are unique across both). Not found when it names neither, or
    /// something `actor` may not see.
    pub async fn identify(&self, actor: &User, id: uuid::Uuid) -> Result<Identified, ServiceError> {
        match self.get_request(actor, RequestId::from_uuid(id)).await {
            Ok(request) => return Ok(Identified::Request(request)),
            Err(ServiceError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.get_grant(actor, GrantId::from_uuid(id)).await {
            Ok(grant) => Ok(Identified::Grant(grant)),
            Err(ServiceError::NotFound { .. }) => Err(ServiceError::not_found("request or grant", id)),
            Err(e) => Err(e),
        }
    }

    pub async fn list_requests(
        &self,
        actor: &User,
        q: RequestQuery,
    ) -> Result<Page<RequestView>, ServiceError> {
        let requester = if sees_all(actor) {
            q.requester.clone()
        } else {
            Some(actor.id.clone())
        };
        let page = PageQuery::new(q.after, q.limit);
        let filter = RequestFilter {
            requester,
            states: q.state.into_iter().collect(),
            resource: None,
        };
        let items = self
            .store
            .requests(&page, &filter)
            .await?
            .iter()
            .map(Request::view)
            .collect();
        Ok(super::page_of(items, &page, |r: &RequestView| r.id.to_string()))
    }

    /// Commits and wakes the scheduler when the change scheduled work.
    /// Returns the new versions of the records written.
    pub(crate) async fn commit(&self, change: Change) -> Result<Committed, ServiceError> {
        let wake = !change.schedule.is_empty();
        let outboxes = outboxes_of(&change);
        let recount = supersedes_failing_revoke(&change);
        let changed = super::feed::Changed::of(&change);
        let committed = self.store.commit(change).await?;
        if let Some(changed) = changed {
            self.live.feed.publish(changed);
        }
        if recount {
            self.count_failing_revokes().await?;
        }
        if wake {
            self.scheduler.notify_one();
        }
        self.signal_outboxes(outboxes);
        Ok(committed)
    }
}

/// The configurations whose outbox `change` adds to.
pub(crate) fn outboxes_of(change: &Change) -> std::collections::BTreeSet<jitgate_shared::v1::ConfigId> {
    change
        .commands
        .iter()
        .map(|c| c.entitlement.configuration.clone())
        .collect()
}

/// Whether `change` clears a failing revoke by granting its entitlement
/// again (the `revokes_failing` gauge is counted again after it).
pub(crate) fn supersedes_failing_revoke(change: &Change) -> bool {
    change
        .audit
        .iter()
        .any(|a| matches!(a.event, AuditEvent::RevokeSuperseded { .. }))
}

fn decision_label(d: Decision) -> String {
    match d {
        Decision::Approve => "approve".into(),
        Decision::Deny => "deny".into(),
    }
}
