//! What a person may ask for and what waits for their review: the
//! catalogue (the policies' decision for them, with each resource's
//! workflow) and the approver's inbox. The console and the API show the
//! same answers.

use std::collections::BTreeMap;

use jitgate_shared::v1::api::{CatalogueEntry, InboxEntry, RequestState, Role, WorkflowView};
use jitgate_shared::v1::UserId;

use super::requests::{principal_facts, resource_facts};
use super::{Broker, ServiceError};
use crate::domain::chain;
use crate::domain::policy::{Action, RequestFacts, Workflow};
use crate::domain::request::{pattern_text, PersonsNow, Request, RequestError, Reviewer};
use crate::domain::user::User;
use crate::store::{PageQuery, RequestFilter, MAX_PAGE};

/// How many earlier requests of the requester an inbox entry shows.
const HISTORY: usize = 5;

fn workflow_view(w: &Workflow, break_glass: bool) -> WorkflowView {
    WorkflowView {
        approvals_required: if w.auto_approve { 0 } else { w.approvals_required },
        default_duration_seconds: w.default_duration.as_secs(),
        max_duration_seconds: w.max_duration.as_secs(),
        justification_required: w.justification_required,
        ticket_pattern: w.ticket_pattern.as_ref().map(pattern_text),
        pending_ttl_seconds: w.pending_ttl.as_secs(),
        break_glass: w.break_glass_allowed && break_glass,
        extension_allowed: w.extension_allowed,
    }
}

impl Broker {
    /// The resources `actor` may request, by configuration then resource,
    /// each with its workflow and who could approve it. A resource is
    /// listed when a policy permits the request at the workflow's default
    /// duration, with or without a ticket.
    #[tracing::instrument(skip_all, fields(user = %actor.id))]
    pub async fn catalogue(&self, actor: &User) -> Result<Vec<CatalogueEntry>, ServiceError> {
        if !actor.has_role(Role::Requester) {
            return Ok(Vec::new());
        }
        let (configurations, resources, users) = tokio::try_join!(
            self.store.configurations(),
            self.store.resources(),
            self.store.users()
        )?;
        let configurations: BTreeMap<_, _> = configurations
            .into_iter()
            .filter(|c| c.config.enabled)
            .map(|c| (c.config.id.clone(), c.config))
            .collect();
        let me = actor.person_keys();
        let approvers: Vec<&User> = users
            .iter()
            .filter(|u| u.has_role(Role::Approver) && !u.disabled)
            .filter(|u| u.id != actor.id && !u.person_keys().same_person(&me))
            .collect();
        let policies = self.policies.current();
        let who = principal_facts(actor);
        let mut entries = Vec::new();
        for stored in &resources {
            let Some(config) = configurations.get(&stored.resource.configuration) else {
                continue;
            };
            let what = resource_facts(stored, config.kind.as_str());
            let workflow = policies.workflow(&what);
            let facts = |has_ticket| RequestFacts {
                duration_seconds: workflow.default_duration.as_secs(),
                break_glass: false,
                has_ticket,
                on_call: false,
            };
            let may_request = policies.permits(Action::Request, &who, &what, facts(false))
                || policies.permits(Action::Request, &who, &what, facts(true));
            let break_glass = workflow.break_glass_allowed
                && policies.permits(
                    Action::BreakGlass,
                    &who,
                    &what,
                    RequestFacts {
                        break_glass: true,
                        ..facts(workflow.ticket_pattern.is_some())
                    },
                );
            if !may_request && !break_glass {
                continue;
            }
            let approvers = approvers
                .iter()
                .filter(|u| {
                    policies.permits(
                        Action::Approve,
                        &principal_facts(u),
                        &what,
                        facts(workflow.ticket_pattern.is_some()),
                    )
                })
                .map(|u| u.id.clone())
                .collect();
            entries.push(CatalogueEntry {
                resource: stored.resource.clone(),
                configuration_name: if config.display_name.is_empty() {
                    config.id.to_string()
                } else {
                    config.display_name.clone()
                },
                workflow: workflow_view(&workflow, break_glass),
                approvers,
            });
        }
        entries.sort_by(|a, b| {
            (&a.configuration_name, &a.resource.id).cmp(&(&b.configuration_name, &b.resource.id))
        });
        Ok(entries)
    }

    /// Pending requests `actor` may review, oldest first: never one of
    /// their own person's, only where a policy lets them approve (the same
    /// rules a review is held to). Those their person already reviewed stay
    /// listed, marked. Reads the store a fixed number of times whatever the
    /// inbox holds.
    #[tracing::instrument(skip_all, fields(user = %actor.id))]
    pub async fn inbox(&self, actor: &User) -> Result<Vec<InboxEntry>, ServiceError> {
        if !actor.has_role(Role::Approver) {
            return Ok(Vec::new());
        }
        let pending_filter = RequestFilter {
            requester: None,
            states: vec![RequestState::Pending],
            resource: None,
        };
        let all = PageQuery::new(None::<String>, MAX_PAGE);
        let (pending, recent, users, resources, configurations, graph) = tokio::try_join!(
            // Every pending request, however many: the oldest come first.
            self.requests_where(&pending_filter),
            async { Ok(self.store.requests(&all, &RequestFilter::default()).await?) },
            async { Ok(self.store.users().await?) },
            async { Ok(self.store.resources().await?) },
            async { Ok(self.store.configurations().await?) },
            self.config_graph(),
        )?;
        let users: BTreeMap<&UserId, &User> = users.iter().map(|u| (&u.id, u)).collect();
        let resources: BTreeMap<_, _> = resources.iter().map(|r| (&r.resource.id, r)).collect();
        let kinds: BTreeMap<_, _> = configurations
            .iter()
            .map(|c| (&c.config.id, c.config.kind.as_str()))
            .collect();
        let policies = self.policies.current();
        let now = self.clock.now();
        let mut entries = Vec::new();
        for request in pending.iter().rev() {
            let Some(resource) = resources.get(&request.resource) else {
                continue;
            };
            let Some(kind) = kinds.get(&resource.resource.configuration) else {
                continue;
            };
            let what = resource_facts(resource, kind);
            let now_keys = persons_now(request, &users);
            let (approving_policies, check) = may_review(&policies, actor, &what, request, &now_keys, now);
            let reviewed = match check {
                Ok(()) => false,
                Err(RequestError::AlreadyReviewed { .. } | RequestError::AlreadyReviewedAs { .. }) => true,
                Err(_) => continue,
            };
            let chain = match chain::resolve(&graph, &resource.resource, &request.principal) {
                Ok(plan) if plan.path.0.len() > 1 => plan.path.0,
                _ => Vec::new(),
            };
            entries.push(InboxEntry {
                request: request.view(),
                requester_name: users
                    .get(&request.requester)
                    .map_or_else(|| request.requester.to_string(), |u| u.display_name.clone()),
                approving_policies,
                reviewed,
                chain,
                history: history_of(&recent, request),
            });
        }
        Ok(entries)
    }
}

/// Who each account involved in `request` is now (for one person, one
/// voice).
pub(crate) fn persons_now(request: &Request, users: &BTreeMap<&UserId, &User>) -> PersonsNow {
    request
        .accounts_involved()
        .into_iter()
        .filter_map(|a| users.get(a))
        .map(|u| (u.id.clone(), u.person_keys()))
        .collect()
}

/// Whether `actor` may review `request` now: the policies that let them
/// approve it, and the request's own check (not the requester's person,
/// not reviewed yet by their person, still pending). The one rule the
/// inbox and the notification of approvers share.
pub(crate) fn may_review(
    policies: &crate::domain::policy::Policies,
    actor: &User,
    what: &crate::domain::policy::ResourceFacts<'_>,
    request: &Request,
    now_keys: &PersonsNow,
    now: chrono::DateTime<chrono::Utc>,
) -> (Vec<String>, Result<(), RequestError>) {
    let approving_policies = policies.permitting(
        Action::Approve,
        &principal_facts(actor),
        what,
        RequestFacts {
            duration_seconds: request.duration_seconds,
            break_glass: request.break_glass,
            has_ticket: request.ticket.is_some(),
            on_call: false,
        },
    );
    let reviewer = Reviewer {
        id: &actor.id,
        keys: actor.person_keys(),
        may_approve: actor.has_role(Role::Approver) && !actor.disabled && !approving_policies.is_empty(),
    };
    let check = request.check_reviewer(&reviewer, now_keys, now);
    (approving_policies, check)
}

/// The requester's latest earlier requests for the same resource.
fn history_of(recent: &[Request], request: &Request) -> Vec<jitgate_shared::v1::api::RequestView> {
    recent
        .iter()
        .filter(|r| r.id != request.id && r.requester == request.requester && r.resource == request.resource)
        .filter(|r| r.created_at <= request.created_at)
        .take(HISTORY)
        .map(Request::view)
        .collect()
}
