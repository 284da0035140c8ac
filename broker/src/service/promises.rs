//! The model-based test of jitgate's two promises, over the broker's own
//! services on a real store with a manual clock and a simulated tenant:
//!
//! 1. Access ends when its window ends, whatever fails: after every step,
//!    every entitlement the tenant holds is covered by an active grant, or
//!    its revoke is queued (and, when the agent refused it, surfaced as
//!    failing); the agent's own deadline for it is never later than the
//!    latest active window (I1).
//! 2. Nobody approves their own elevation or counts twice: every request
//!    that became approved has its N approvals from distinct people, none
//!    the requester, whatever accounts they used (I2).
//!
//! and the audit chain verifies after every step (I3); the
//! `revokes_failing` gauge says how many grants are failing (I4); the
//! approvers' inbox never offers a person their own request and knows
//! whom their person already reviewed (I5); every ended grant's end is in
//! its holder's audit records as an auditor reads them (I6); the
//! store-wide metrics agree with the grants (I7); each account's grants and
//! requests read by account are exactly theirs (I8).
//!
//! People: nine accounts of six people: `dan` and `dan-sso` share a
//! verified email (linked automatically), `eve-2` is linked to `eve` by an
//! admin, `hal-2` is linked to `hal` only when a step says so. Steps: ask
//! (auto-approved, one approval, two approvals; `dev` and `prod` are one
//! entitlement, so grants overlap on one lease), review (through an
//! account, or from chat by the address the chat vouches for), cancel, early
//! revoke, extend, time passing, deliveries the agent carries out, throttles
//! or refuses, disabling an account, linking, force-closing a failing
//! revoke, and broker restarts.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{CommandOp, Decision, ExtendBody, ForceCloseBody, ReviewBody, Role, UserBody};
use jitgate_shared::v1::protocol::{FailureKind, Outcome};
use jitgate_shared::v1::{AgentId, Entitlement, GrantId, RequestId, UserId};
use proptest::prelude::*;

use crate::audit::Actor;
use crate::domain::grant::Grant;
use crate::domain::lease::Lease;
use crate::domain::request::Request;
use crate::domain::user::User;
use crate::store::{GrantFilter, RequestFilter};
use crate::testing::{body, harness_on, Backend, Harness};

/// (account, email, person an admin links it to, the human behind it).
const ACCOUNTS: &[(&str, Option<&str>, Option<&str>, &str)] = &[
    ("ann", None, None, "ann"),
    ("ben", None, None, "ben"),
    ("cat", None, None, "cat"),
    ("dan", Some("dan@example.org"), None, "dan"),
    ("dan-sso", Some("Dan@Example.org"), None, "dan"),
    ("eve", Some("eve@example.org"), None, "eve"),
    ("eve-2", None, Some("eve"), "eve"),
    ("hal", Some("hal@example.org"), None, "hal"),
    ("hal-2", Some("hal.ops@example.org"), None, "hal"),
];
const PEOPLE: usize = ACCOUNTS.len();
/// Addresses a chat vouches for: the accounts' (in another case), and
/// one no account has.
const CHAT_EMAILS: [&str; 5] = [
    "DAN@example.org",
    "eve@example.org",
    "hal@example.org",
    "hal.ops@example.org",
    "mallory@example.org",
];
const RESOURCES: [&str; 3] = ["auto", "dev", "prod"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Done,
    /// The agent answers every command with a failure of this kind.
    Failed(FailureKind),
}

impl Fate {
    /// The agent could not carry a grant out, for good: the broker gives
    /// up on it, so its deadline is not the tenant's.
    fn grant_failed_for_good(self) -> bool {
        matches!(self, Fate::Failed(kind) if !kind.retryable())
    }

    /// The revoke must be surfaced on its grant at once (it stays queued
    /// whatever the kind).
    fn revoke_surfaced(self) -> bool {
        matches!(self, Fate::Failed(kind) if !kind.retryable() || kind == FailureKind::Unauthorised)
    }
}

#[derive(Debug, Clone)]
enum Step {
    Ask {
        who: usize,
        resource: usize,
        secs: u64,
    },
    Review {
        by: usize,
        request: usize,
        approve: bool,
    },
    /// A review from chat: the member is known by the address their chat
    /// vouches for (one of the accounts', or nobody's), mapped to an
    /// account as the chat service maps it.
    ReviewInChat {
        email: usize,
        request: usize,
        approve: bool,
    },
    /// Several accounts review one request at the same moment, on tasks of
    /// their own: their changes meet in one group commit.
    ReviewAtOnce {
        by: Vec<usize>,
        request: usize,
    },
    Cancel {
        request: usize,
    },
    Revoke {
        grant: usize,
    },
    Extend {
        grant: usize,
        secs: u64,
    },
    Advance {
        secs: i64,
    },
    /// The agent answers every queued command, as `fate` says; `together`:
    /// the answers are stored as one batch, as a busy hub session stores
    /// the answers that arrive while it stores the one before.
    Deliver {
        fate: Fate,
        together: bool,
    },
    Disable {
        who: usize,
    },
    LinkHal,
    ForceClose,
    Restart,
}

/// An account, most often one of a few, so that one person's grants
/// overlap and their requests meet their other accounts.
fn someone() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0usize..2, 1 => 0..PEOPLE]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (someone(), 0..RESOURCES.len(), 1u64..900).prop_map(|(who, resource, secs)| Step::Ask { who, resource, secs }),
        4 => (0..PEOPLE, 0usize..10, prop::bool::weighted(0.85)).prop_map(|(by, request, approve)| Step::Review { by, request, approve }),
        2 => (0..CHAT_EMAILS.len(), 0usize..10, prop::bool::weighted(0.85)).prop_map(|(email, request, approve)| Step::ReviewInChat { email, request, approve }),
        2 => (proptest::collection::vec(someone(), 2..5), 0usize..10).prop_map(|(by, request)| Step::ReviewAtOnce { by, request }),
        1 => (0usize..10).prop_map(|request| Step::Cancel { request }),
        2 => (0usize..10).prop_map(|grant| Step::Revoke { grant }),
        1 => (0usize..10, 1u64..900).prop_map(|(grant, secs)| Step::Extend { grant, secs }),
        3 => (1i64..600).prop_map(|secs| Step::Advance { secs }),
        4 => prop_oneof![
            3 => Just(Fate::Done),
            1 => prop::sample::select(&[FailureKind::Transport, FailureKind::Throttled, FailureKind::Busy][..]).prop_map(Fate::Failed),
            2 => prop::sample::select(&[FailureKind::Unauthorised, FailureKind::NotFound, FailureKind::Rejected][..]).prop_map(Fate::Failed),
        ].prop_flat_map(|fate| any::<bool>().prop_map(move |together| Step::Deliver { fate, together })),
        1 => someone().prop_map(|who| Step::Disable { who }),
        1 => Just(Step::LinkHal),
        1 => Just(Step::ForceClose),
        1 => Just(Step::Restart),
    ]
}

/// The world outside the broker: what the tenant holds (with the deadline
/// the agent enforces for it), and what the test knows of people.
struct World {
    h: Harness,
    admin: User,
    agent: AgentId,
    /// Lease key -> the entitlement held and the agent's own deadline.
    tenant: BTreeMap<String, (Entitlement, DateTime<Utc>)>,
    requests: Vec<RequestId>,
    grants: Vec<GrantId>,
    hal_linked: bool,
    /// Entitlements whose newest grant command (a new deadline) the agent
    /// refused: it keeps the deadline it had, and the refusal shows on the
    /// grant as a delivery error.
    refused_deadline: BTreeSet<String>,
    /// Requests already checked for I2 when they became approved.
    decided: BTreeSet<RequestId>,
}

impl World {
    async fn new(backend: Backend) -> World {
        let h = harness_on(backend).await;
        for (id, email, person, _) in ACCOUNTS.iter().skip(3) {
            save(&h, id, *email, person.map(str::to_owned)).await;
        }
        let admin = h
            .broker
            .save_user(
                Actor::System,
                UserBody {
                    id: UserId::new("root").unwrap(),
                    display_name: String::new(),
                    email: None,
                    roles: [Role::Admin].into(),
                    groups: Default::default(),
                    person: None,
                },
            )
            .await
            .unwrap();
        let admin = match admin {
            crate::service::admin::UserOutcome::Created(t) => t.user.id,
            crate::service::admin::UserOutcome::Updated(u) => u.id,
        };
        let admin = h.broker.store().user(&admin).await.unwrap().unwrap();
        World {
            h,
            admin,
            agent: AgentId::generate(),
            tenant: BTreeMap::new(),
            requests: Vec::new(),
            grants: Vec::new(),
            hal_linked: false,
            refused_deadline: BTreeSet::new(),
            decided: BTreeSet::new(),
        }
    }

    /// The account as the API would authenticate it: none once disabled.
    async fn account(&self, i: usize) -> Option<User> {
        let id = UserId::new(ACCOUNTS[i].0).unwrap();
        self.h
            .broker
            .store()
            .user(&id)
            .await
            .unwrap()
            .filter(|u| !u.disabled)
    }

    async fn owner_of_request(&self, id: RequestId) -> Option<User> {
        let r = self.h.broker.store().request(id).await.unwrap()?;
        let i = ACCOUNTS.iter().position(|a| a.0 == r.requester.as_str())?;
        self.account(i).await
    }

    async fn owner_of_grant(&self, id: GrantId) -> Option<User> {
        let g = self.h.broker.store().grant(id).await.unwrap()?;
        let i = ACCOUNTS.iter().position(|a| a.0 == g.user.as_str())?;
        self.account(i).await
    }

    /// The human behind an account, as far as anyone can know yet.
    fn human(&self, account: &UserId) -> String {
        let (id, _, _, human) = ACCOUNTS
            .iter()
            .find(|a| a.0 == account.as_str())
            .copied()
            .unwrap_or(("?", None, None, "?"));
        if id == "hal-2" && !self.hal_linked {
            return id.to_owned();
        }
        human.to_owned()
    }

    async fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
        let broker = self.h.broker.clone();
        match step {
            Step::Ask { who, resource, secs } => {
                if let Some(u) = self.account(who).await {
                    if let Ok(r) = broker.create_request(&u, body(RESOURCES[resource], secs)).await {
                        self.requests.push(r.id);
                        self.grants.extend(r.grant);
                    }
                }
            }
            Step::Review { by, request, approve } => {
                let (Some(u), Some(id)) = (self.account(by).await, self.requests.get(request)) else {
                    return Ok(());
                };
                let d = if approve {
                    Decision::Approve
                } else {
                    Decision::Deny
                };
                if let Ok(r) = broker.review_request(&u, *id, d, ReviewBody::default()).await {
                    self.grants.extend(r.grant);
                }
            }
            Step::ReviewInChat {
                email,
                request,
                approve,
            } => {
                let Some(id) = self.requests.get(request).copied() else {
                    return Ok(());
                };
                let users = broker.store().users().await.unwrap();
                let Some(u) = crate::domain::user::account_for_email(&users, CHAT_EMAILS[email], |u| {
                    u.has_role(Role::Approver)
                })
                .cloned() else {
                    return Ok(());
                };
                let d = if approve {
                    Decision::Approve
                } else {
                    Decision::Deny
                };
                if let Ok(r) = broker.review_request(&u, id, d, ReviewBody::default()).await {
                    self.grants.extend(r.grant);
                }
            }
            Step::ReviewAtOnce { by, request } => {
                let Some(id) = self.requests.get(request).copied() else {
                    return Ok(());
                };
                let mut reviews = tokio::task::JoinSet::new();
                for who in by {
                    if let Some(u) = self.account(who).await {
                        let broker = broker.clone();
                        reviews.spawn(async move {
                            broker
                                .review_request(&u, id, Decision::Approve, ReviewBody::default())
                                .await
                        });
                    }
                }
                while let Some(done) = reviews.join_next().await {
                    if let Ok(Ok(r)) = done {
                        self.grants.extend(r.grant);
                    }
                }
            }
            Step::Cancel { request } => {
                if let Some(id) = self.requests.get(request).copied() {
                    if let Some(u) = self.owner_of_request(id).await {
                        let _ = broker.cancel_request(&u, id).await;
                    }
                }
            }
            Step::Revoke { grant } => {
                if let Some(id) = self.grants.get(grant).copied() {
                    if let Some(u) = self.owner_of_grant(id).await {
                        let _ = broker.revoke_grant(&u, id, Default::default()).await;
                    }
                }
            }
            Step::Extend { grant, secs } => {
                if let Some(id) = self.grants.get(grant).copied() {
                    if let Some(u) = self.owner_of_grant(id).await {
                        let extend = ExtendBody {
                            duration_seconds: secs,
                            justification: None,
                            ticket: None,
                        };
                        if let Ok(jitgate_shared::v1::api::ExtendOutcome::PendingApproval { request }) =
                            broker.extend_grant(&u, id, extend).await
                        {
                            self.requests.push(request.id);
                        }
                    }
                }
            }
            Step::Advance { secs } => {
                self.h.clock.advance(chrono::Duration::seconds(secs));
                self.h.drain().await;
            }
            Step::Deliver { fate, together } => self.deliver(fate, together).await?,
            Step::Disable { who } => {
                let id = UserId::new(ACCOUNTS[who].0).unwrap();
                broker.disable_user(&self.admin, &id).await.unwrap();
            }
            Step::LinkHal => {
                if !self.hal_linked {
                    let hal = broker
                        .store()
                        .user(&UserId::new("hal").unwrap())
                        .await
                        .unwrap()
                        .unwrap();
                    save(&self.h, "hal-2", Some("hal.ops@example.org"), Some(hal.person)).await;
                    self.hal_linked = true;
                }
            }
            Step::ForceClose => {
                let failing = all_grants(&self.h).await;
                if let Some(g) = failing.iter().find(|g| g.revoke_failing.is_some()) {
                    let f = g.revoke_failing.clone().unwrap();
                    // The admin removed it by hand, then says so.
                    self.tenant.remove(&Lease::key_for(&g.entitlement));
                    let reason = ForceCloseBody {
                        reason: "removed in the console by hand".into(),
                    };
                    broker
                        .force_close_revoke(&self.admin, &f.command, reason)
                        .await
                        .unwrap();
                }
            }
            Step::Restart => self.h.restart().await,
        }
        Ok(())
    }

    /// The agent answers every queued command, as `fate` says; the answers
    /// are stored one by one, or `together` as one batch.
    async fn deliver(&mut self, fate: Fate, together: bool) -> Result<(), TestCaseError> {
        let aws = "aws".parse().unwrap();
        let queued = self.h.broker.store().outbox(&aws, 10_000).await.unwrap();
        let mut answers = Vec::with_capacity(queued.len());
        for command in queued {
            let key = Lease::key_for(&command.entitlement);
            let outcome = match (fate, command.op) {
                (Fate::Done, CommandOp::Grant) => {
                    self.refused_deadline.remove(&key);
                    self.tenant
                        .insert(key.clone(), (command.entitlement.clone(), command.not_after));
                    Outcome::Applied
                }
                (Fate::Done, CommandOp::Revoke) => {
                    self.refused_deadline.remove(&key);
                    match self.tenant.remove(&key) {
                        Some(_) => Outcome::Revoked,
                        None => Outcome::AlreadyAbsent,
                    }
                }
                (Fate::Failed(FailureKind::Throttled), _) => Outcome::failed(
                    FailureKind::Throttled,
                    "Throttling: rate exceeded",
                    Some(Duration::from_secs(2)),
                ),
                (Fate::Failed(kind), _) => Outcome::failed(kind, format!("{kind:?}"), None),
            };
            answers.push((command, outcome));
        }
        if together {
            let stored = self.h.broker.answer_commands(self.agent, answers.clone()).await;
            for (command, stored) in stored {
                prop_assert!(stored.is_ok(), "{}: {stored:?}", command.id);
            }
        } else {
            for (command, outcome) in &answers {
                self.h
                    .broker
                    .answer_command(self.agent, command, outcome.clone())
                    .await
                    .unwrap();
            }
        }
        for (command, _) in answers {
            let key = Lease::key_for(&command.entitlement);
            if fate.grant_failed_for_good() && command.op == CommandOp::Grant {
                self.refused_deadline.insert(key.clone());
            }
            if command.op == CommandOp::Revoke && fate != Fate::Done {
                let still = self.h.broker.store().queued_command(&command.id).await.unwrap();
                prop_assert!(still.is_some(), "a failed revoke left the outbox: {}", command.id);
            }
            if command.op == CommandOp::Revoke && fate.revoke_surfaced() {
                if let Some(g) = self.h.broker.store().grant(command.grant).await.unwrap() {
                    let failing = g.revoke_failing.as_ref().map(|f| f.command.as_str());
                    prop_assert_eq!(
                        failing,
                        Some(command.id.as_str()),
                        "refused revoke not surfaced on its grant"
                    );
                }
            }
        }
        Ok(())
    }

    async fn check(&mut self) -> Result<(), TestCaseError> {
        let store = self.h.broker.store().clone();
        let grants = all_grants(&self.h).await;
        let aws = "aws".parse().unwrap();
        let outbox = store.outbox(&aws, 100_000).await.unwrap();
        // I1: what the tenant holds is covered by an active grant or a
        // queued revoke; the agent's deadline never outlives the windows.
        for (key, (entitlement, deadline)) in &self.tenant {
            let active: Vec<&Grant> = grants
                .iter()
                .filter(|g| {
                    g.state == jitgate_shared::v1::api::GrantState::Active && &g.entitlement == entitlement
                })
                .collect();
            let queued: Vec<_> = outbox
                .iter()
                .filter(|c| &Lease::key_for(&c.entitlement) == key)
                .collect();
            let revoke_queued = queued.iter().any(|c| c.op == CommandOp::Revoke);
            prop_assert!(
                !active.is_empty() || revoke_queued,
                "I1: {} held in the tenant with no active grant and no revoke queued",
                entitlement.key()
            );
            if self.refused_deadline.contains(key) {
                // The agent refused its new deadline: the broker still
                // revokes at the window's end, and the refusal is shown.
                prop_assert!(
                    grants
                        .iter()
                        .any(|g| &g.entitlement == entitlement && g.delivery_error.is_some()),
                    "I1: a refused deadline for {} is not surfaced",
                    entitlement.key()
                );
            } else if queued.is_empty() {
                if let Some(latest) = active.iter().map(|g| g.ends_at).max() {
                    prop_assert!(
                        *deadline <= latest,
                        "I1: the agent would keep {} until {} though the latest window ends at {}",
                        entitlement.key(),
                        deadline,
                        latest
                    );
                }
            }
        }
        // I2: approvals of newly approved requests come from distinct
        // people, none the requester.
        for r in all_requests(&self.h).await {
            if r.approvals_required == 0 || r.grant.is_none() || !self.decided.insert(r.id) {
                continue;
            }
            let requester = self.human(&r.requester);
            let mut people = BTreeSet::new();
            for review in &r.reviews {
                let who = self.human(&review.reviewer);
                prop_assert!(
                    who != requester,
                    "I2: {} reviewed a request of their own person {}",
                    review.reviewer,
                    r.id
                );
                prop_assert!(
                    people.insert(who),
                    "I2: one person reviewed {} twice ({})",
                    r.id,
                    review.reviewer
                );
            }
            let approvals = r
                .reviews
                .iter()
                .filter(|v| v.decision == Decision::Approve)
                .count();
            prop_assert!(
                u32::try_from(approvals).unwrap() >= r.approvals_required,
                "I2: {} approved with {} of {} approvals",
                r.id,
                approvals,
                r.approvals_required
            );
        }
        // I5: the approver's inbox (the console's and the API's) offers no
        // one a request of their own person, and marks as reviewed what
        // their person already reviewed through any account.
        for (account, _, _, _) in ACCOUNTS {
            let Some(user) = store.user(&UserId::new(*account).unwrap()).await.unwrap() else {
                continue;
            };
            if user.disabled {
                continue;
            }
            let me = self.human(&user.id);
            for entry in self.h.broker.inbox(&user).await.unwrap() {
                let r = &entry.request;
                prop_assert!(
                    self.human(&r.requester) != me,
                    "I5: {} offered their own person's request {}",
                    account,
                    r.id
                );
                let voted = r.reviews.iter().any(|v| self.human(&v.reviewer) == me);
                prop_assert_eq!(
                    entry.reviewed,
                    voted,
                    "I5: {}'s inbox misstates whether their person reviewed {}",
                    account,
                    r.id
                );
            }
        }
        // I6: every ended grant's end is in the audit log as an auditor
        // reads its holder's records (the console's audit page, the API).
        let mut ended: BTreeMap<&UserId, BTreeSet<GrantId>> = BTreeMap::new();
        for g in grants
            .iter()
            .filter(|g| g.state == jitgate_shared::v1::api::GrantState::Ended)
        {
            ended.entry(&g.user).or_default().insert(g.id);
        }
        let mut auditor = self.h.users[0].clone();
        auditor.roles = [Role::Auditor].into();
        for (holder, ids) in ended {
            let mut logged = BTreeSet::new();
            let mut before = None;
            loop {
                let query = super::audit::AuditQuery {
                    filter: crate::audit::query::AuditFilter {
                        person: Some(holder.clone()),
                        kind: Some("grant_ended"),
                        ..Default::default()
                    },
                    before,
                    limit: super::audit::MAX_AUDIT_PAGE,
                };
                let page = self.h.broker.audit_log(&auditor, &query).await.unwrap();
                for r in &page.records {
                    if let crate::audit::AuditEvent::GrantEnded { grant, .. } = &r.event {
                        logged.insert(*grant);
                    }
                }
                match page.next_before {
                    Some(b) => before = Some(b),
                    None => break,
                }
            }
            let missing: Vec<_> = ids.difference(&logged).collect();
            prop_assert!(
                missing.is_empty(),
                "I6: {}'s ended grants {:?} are not in their audit records",
                holder,
                missing
            );
        }
        // I3: the audit chain verifies, by the check the broker and
        // `audit verify` run.
        let report = crate::audit::verify::verify_stored(store.as_ref(), None, |_| {})
            .await
            .unwrap();
        prop_assert!(report.broken.is_none(), "I3: {:?}", report.broken);
        // I4: the gauge counts the failing revokes.
        let failing = grants.iter().filter(|g| g.revoke_failing.is_some()).count();
        prop_assert_eq!(
            self.h.broker.metrics().revokes_failing.get(),
            i64::try_from(failing).unwrap(),
            "I4: revokes_failing gauge"
        );
        // I7: the store-wide gauges agree with the grants: as many active
        // as the gauge says, and no more lateness observed than removals
        // confirmed.
        self.h.broker.observe().await.unwrap();
        let metrics = self.h.broker.metrics();
        let mut gauged = 0;
        for c in store.configurations().await.unwrap() {
            let labels = crate::metrics::of_configuration(c.config.id.as_str());
            gauged += metrics.grants_active.get_or_create(&labels).get();
        }
        let active = grants
            .iter()
            .filter(|g| g.state == jitgate_shared::v1::api::GrantState::Active)
            .count();
        prop_assert_eq!(gauged, i64::try_from(active).unwrap(), "I7: grants_active gauge");
        let removed = grants.iter().filter(|g| g.removed_at.is_some()).count();
        let observed: u64 = metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("jitgate_revoke_lateness_seconds_count "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap();
        prop_assert!(
            observed <= u64::try_from(removed).unwrap(),
            "I7: {} revoke lateness observations for {} removals",
            observed,
            removed
        );
        // I8: each account's grants and requests, as deprovisioning and
        // people's own lists read them (the embedded store through its
        // indexes by user), are exactly theirs among all.
        let requests = all_requests(&self.h).await;
        for (account, ..) in ACCOUNTS {
            let id = UserId::new(*account).unwrap();
            let of = GrantFilter {
                user: Some(id.clone()),
                ..GrantFilter::default()
            };
            let theirs: Vec<_> = self.h.broker.grants_where(&of).await.unwrap();
            let want: Vec<_> = grants.iter().filter(|g| g.user == id).collect();
            prop_assert!(
                theirs.iter().eq(want.iter().copied()),
                "I8: grants of {}: {:?}, not {:?}",
                account,
                theirs.iter().map(|g| g.id).collect::<Vec<_>>(),
                want.iter().map(|g| g.id).collect::<Vec<_>>()
            );
            let of = RequestFilter {
                requester: Some(id.clone()),
                ..RequestFilter::default()
            };
            let theirs: Vec<_> = self.h.broker.requests_where(&of).await.unwrap();
            let want: Vec<_> = requests.iter().filter(|r| r.requester == id).collect();
            prop_assert!(
                theirs.iter().eq(want.iter().copied()),
                "I8: requests of {}: {:?}, not {:?}",
                account,
                theirs.iter().map(|r| r.id).collect::<Vec<_>>(),
                want.iter().map(|r| r.id).collect::<Vec<_>>()
            );
        }
        Ok(())
    }
}

async fn save(h: &Harness, id: &str, email: Option<&str>, person: Option<String>) {
    h.broker
        .save_user(
            Actor::System,
            UserBody {
                id: UserId::new(id).unwrap(),
                display_name: String::new(),
                email: email.map(str::to_owned),
                roles: [Role::Requester, Role::Approver].into(),
                groups: ["people".to_owned()].into(),
                person,
            },
        )
        .await
        .unwrap();
}

/// Every grant and every request, through the pagers the services use.
async fn all_grants(h: &Harness) -> Vec<Grant> {
    h.broker.grants_where(&GrantFilter::default()).await.unwrap()
}

async fn all_requests(h: &Harness) -> Vec<Request> {
    h.broker.requests_where(&RequestFilter::default()).await.unwrap()
}

async fn run_steps(backend: Backend, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut w = World::new(backend).await;
    for step in steps {
        w.run(step).await?;
        w.check().await?;
    }
    // In the end: every window closes, the agent carries out what is queued,
    // and the tenant holds nothing.
    w.h.clock.advance(chrono::Duration::hours(6));
    w.h.drain().await;
    for round in 0..4 {
        w.run(Step::Deliver {
            fate: Fate::Done,
            together: round % 2 == 1,
        })
        .await?;
        w.check().await?;
    }
    prop_assert!(
        w.tenant.is_empty(),
        "still held at the end: {:?}",
        w.tenant.keys().collect::<Vec<_>>()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_two_promises_hold_whatever_happens(steps in proptest::collection::vec(step(), 1..60)) {
        // Two workers, so that reviews made at once are written at once.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_steps(Backend::Sled, steps))?;
    }
}

proptest! {
    // Fewer cases: each is a database of its own. The rules are the same
    // code; what this adds is the store's transactions, versions and
    // outbox on PostgreSQL under the same steps.
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_two_promises_hold_on_postgres(steps in proptest::collection::vec(step(), 1..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_steps(Backend::Postgres, steps))?;
    }
}
