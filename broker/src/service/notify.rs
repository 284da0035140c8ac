//! Notifications: routing the audit log's events to addresses, warning of
//! windows about to end, and delivering what is due. The loop that runs
//! them is [`run`]; the rules are in [`crate::notify`].
//!
//! The router follows the audit log with a cursor kept in the store: it
//! reads the records after it, builds each event's facts, and writes the
//! notifications with the advanced cursor in one change, so a crash
//! loses none and queues none twice; of several brokers, the one whose
//! compare-and-set wins routes each record. Nothing here is on the path
//! of a grant or a revoke.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use jitgate_shared::v1::api::Configuration;
use jitgate_shared::v1::api::{EndReason, GrantState};
use jitgate_shared::v1::protocol::Outcome;
use jitgate_shared::v1::{ConfigId, UserId};
use rand::Rng;
use tokio::sync::watch;

use super::catalogue::{may_review, persons_now};
use super::requests::resource_facts;
use super::{Broker, ServiceError};
use crate::audit::{Actor, AuditEvent, AuditRecord};
use crate::domain::catalog::StoredResource;
use crate::domain::contact::Watch;
use crate::domain::grant::Grant;
use crate::domain::policy::Workflow;
use crate::domain::request::Request;
use crate::domain::user::User;
use crate::notify::channels::Channels;
use crate::notify::event::{
    self, ChatActions, ConfigurationFacts, Event, EventKind, GrantFacts, PersonFacts, RequestFacts,
    ReviewFacts, Subject,
};
use crate::notify::queue::{Cursor, Notification, Settled, KEEP_SETTLED};
use crate::notify::route::{Address, Destination};
use crate::store::{Change, GrantFilter};

/// Audit records routed per pass.
const ROUTE_BATCH: usize = 200;
/// Notifications taken per delivery pass.
const DELIVER_BATCH: usize = 64;
/// Deliveries under way at once.
const DELIVER_AT_ONCE: usize = 16;
/// How often, at most, the loop looks for work when nothing wakes it.
const IDLE: Duration = Duration::from_secs(1);
/// How often, at most, grants are checked for windows about to end and
/// configurations for agents offline (and four times within the lead of
/// each, so none passes unwarned).
const WARN_EVERY: Duration = Duration::from_secs(15);
/// How often settled notifications past [`KEEP_SETTLED`] are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// What the router reads once per pass to build events and addresses.
struct Directory {
    users: BTreeMap<UserId, User>,
    resources: BTreeMap<String, StoredResource>,
    configurations: BTreeMap<String, Configuration>,
}

impl Directory {
    /// The kind of a configuration, as workflows see it (`""` when gone).
    fn kind_of(&self, configuration: &str) -> &str {
        self.configurations
            .get(configuration)
            .map_or("", |c| c.kind.as_str())
    }

    fn person(&self, id: &UserId) -> PersonFacts {
        let user = self.users.get(id);
        PersonFacts {
            id: id.clone(),
            name: user.map_or_else(|| id.to_string(), |u| u.display_name.clone()),
            email: user.and_then(|u| u.email.clone()),
        }
    }
}

impl Broker {
    async fn directory(&self) -> Result<Directory, ServiceError> {
        let (users, resources, configurations) = tokio::try_join!(
            self.store.users(),
            self.store.resources(),
            self.store.configurations()
        )?;
        Ok(Directory {
            users: users.into_iter().map(|u| (u.id.clone(), u)).collect(),
            resources: resources
                .into_iter()
                .map(|r| (r.resource.id.to_string(), r))
                .collect(),
            configurations: configurations
                .into_iter()
                .map(|c| (c.config.id.to_string(), c.config))
                .collect(),
        })
    }

    /// Places the router's cursor, at start and before requests are
    /// taken, when channels are set up (what happened before that is not
    /// told; what happens from now on is).
    pub async fn start_notifications(&self) -> Result<(), ServiceError> {
        if self.channels.any() {
            self.notify_cursor().await?;
        }
        Ok(())
    }

    /// The router's cursor; made at the audit log's head the first time
    /// (what happened before notifications were set up is not told).
    async fn notify_cursor(&self) -> Result<Cursor, ServiceError> {
        if let Some(c) = self.store.cursor(Cursor::NOTIFY).await? {
            return Ok(c);
        }
        let head = self.store.audit_head().await?;
        let cursor = Cursor {
            name: Cursor::NOTIFY.into(),
            version: 0,
            seq: head.seq,
        };
        let change = Change {
            cursors: vec![cursor.clone()],
            ..Change::default()
        };
        match self.store.commit(change).await {
            Ok(committed) => Ok(committed.stored(cursor)),
            // Another broker made it first.
            Err(e) if e.is_conflict() => self
                .store
                .cursor(Cursor::NOTIFY)
                .await?
                .ok_or_else(|| ServiceError::Store(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Queues the notifications of the audit records after the cursor (up
    /// to [`ROUTE_BATCH`]). Returns how many records it routed (0 when
    /// none were new, or another broker routed them first).
    pub async fn route_notifications(&self, channels: &Channels) -> Result<usize, ServiceError> {
        let cursor = self.notify_cursor().await?;
        let records = self.store.audit(cursor.seq + 1, ROUTE_BATCH).await?;
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(0);
        };
        let raised: Vec<(&AuditRecord, EventKind, Subject)> = records
            .iter()
            .filter_map(|r| event::raised_by(&r.event).map(|(k, s)| (r, k, s)))
            .collect();
        let mut notifications = Vec::new();
        if !raised.is_empty() && channels.any() {
            let directory = self.directory().await?;
            for (record, kind, subject) in raised {
                let Some((request, grant)) = self.subject(subject).await? else {
                    continue;
                };
                let Some(workflow) = self.workflow_of(&request, &directory) else {
                    continue;
                };
                let mut event = event_of(record, kind, &request, grant.as_ref(), &directory);
                event.chat = ChatActions {
                    approve: workflow.approve_in_chat,
                    extend: workflow.extension_allowed,
                };
                let now = self.clock.now();
                for address in self.addresses(&event, &request, &workflow, channels, &directory) {
                    notifications.push(Notification::new(event.clone(), address, now));
                }
                if decides(kind) && channels.slack().is_some() {
                    for address in self.copies(&request).await? {
                        notifications.push(Notification::new(event.clone(), address, now));
                    }
                }
            }
        }
        let queued = notifications.len();
        let change = Change {
            notifications: self.to_write(notifications).await?,
            cursors: vec![Cursor { seq: last, ..cursor }],
            ..Change::default()
        };
        match self.store.commit(change).await {
            Ok(_) => {
                tracing::debug!(records = records.len(), queued, "notifications routed");
                Ok(records.len())
            }
            Err(e) if e.is_conflict() => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// What to write of `notifications`, in order: those not stored yet (a
    /// warning another broker queued first is not queued again), and for
    /// a message changed in place the stored one retargeted to the newest
    /// event (later events of one pass replace earlier ones).
    async fn to_write(&self, notifications: Vec<Notification>) -> Result<Vec<Notification>, ServiceError> {
        let now = self.clock.now();
        let mut out: Vec<Notification> = Vec::with_capacity(notifications.len());
        for n in notifications {
            if let Some(pending) = out.iter_mut().find(|o| o.id == n.id) {
                if n.address.changes_in_place() {
                    *pending = pending.retarget(n.event, now);
                }
                continue;
            }
            match self.store.notification(&n.id).await? {
                None => out.push(n),
                Some(stored) if n.address.changes_in_place() => out.push(stored.retarget(n.event, now)),
                Some(_) => {}
            }
        }
        Ok(out)
    }

    /// The request (and grant) an event is about; `None` when gone.
    async fn subject(&self, subject: Subject) -> Result<Option<(Request, Option<Grant>)>, ServiceError> {
        Ok(match subject {
            Subject::Request(id) => self.store.request(id).await?.map(|r| (r, None)),
            Subject::Grant(id) => match self.store.grant(id).await? {
                Some(g) => self.store.request(g.request).await?.map(|r| (r, Some(g))),
                None => None,
            },
        })
    }

    /// The workflow of a request's resource; `None` when the resource is
    /// gone.
    fn workflow_of(&self, request: &Request, directory: &Directory) -> Option<Workflow> {
        let resource = directory.resources.get(request.resource.as_str())?;
        let kind = directory.kind_of(resource.resource.configuration.as_str());
        Some(self.policies.current().workflow(&resource_facts(resource, kind)))
    }

    /// Where `event` goes: its resource's routes, made concrete. Addresses
    /// of channels this broker does not have are left out.
    fn addresses(
        &self,
        event: &Event,
        request: &Request,
        workflow: &Workflow,
        channels: &Channels,
        directory: &Directory,
    ) -> BTreeSet<Address> {
        let mut out = BTreeSet::new();
        let direct_messages = channels.slack().is_some_and(|s| s.direct_messages);
        // A person is told by mail and, with Slack, by direct message.
        let tell = |u: &User, out: &mut BTreeSet<Address>| {
            let Some(email) = u.email.clone().filter(|_| !u.disabled) else {
                return;
            };
            if direct_messages {
                out.insert(Address::SlackPerson {
                    email: email.clone(),
                    language: u.language.clone(),
                });
            }
            if channels.has_email() {
                out.insert(Address::Email {
                    to: email,
                    name: u.display_name.clone(),
                    language: u.language.clone(),
                });
            }
        };
        for destination in workflow.notify.for_event(event.kind) {
            match destination {
                Destination::Requester => {
                    if let Some(u) = directory.users.get(&request.requester) {
                        tell(u, &mut out);
                    }
                }
                Destination::Approvers => {
                    let Some(resource) = directory.resources.get(request.resource.as_str()) else {
                        continue;
                    };
                    let kind = directory.kind_of(resource.resource.configuration.as_str());
                    let what = resource_facts(resource, kind);
                    let policies = self.policies.current();
                    let users: BTreeMap<&UserId, &User> = directory.users.iter().collect();
                    let now_keys = persons_now(request, &users);
                    let now = self.clock.now();
                    for u in directory.users.values() {
                        let (_, check) = may_review(&policies, u, &what, request, &now_keys, now);
                        if check.is_ok() {
                            tell(u, &mut out);
                        }
                    }
                }
                other => out.extend(channel_address(other, channels)),
            }
        }
        out
    }

    /// Where the `agent_offline` event of `configuration` goes: the
    /// channel destinations the workflows of its resources route it to
    /// (`[defaults]` when it has none, as a configuration only others
    /// federate through). There are no people to name: `requester` and
    /// `approvers` are left out.
    fn configuration_addresses(
        &self,
        configuration: &ConfigId,
        channels: &Channels,
        directory: &Directory,
    ) -> BTreeSet<Address> {
        let policies = self.policies.current();
        let kind = directory.kind_of(configuration.as_str());
        let mut workflows: Vec<Workflow> = directory
            .resources
            .values()
            .filter(|r| r.resource.configuration == *configuration)
            .map(|r| policies.workflow(&resource_facts(r, kind)))
            .collect();
        if workflows.is_empty() {
            workflows.push(policies.default_workflow());
        }
        workflows
            .iter()
            .flat_map(|w| w.notify.for_event(EventKind::AgentOffline))
            .filter_map(|d| channel_address(d, channels))
            .collect()
    }

    /// Every Slack message posted about `request` that asked for a review:
    /// each is replaced by the message of the event that decided it.
    async fn copies(&self, request: &Request) -> Result<Vec<Address>, ServiceError> {
        Ok(self
            .store
            .notifications_about(request.id)
            .await?
            .into_iter()
            .filter(|n| {
                matches!(
                    n.event.kind,
                    EventKind::RequestCreated | EventKind::RequestReviewed
                )
            })
            .filter_map(|n| {
                let language = match &n.address {
                    Address::SlackChannel { .. } => None,
                    Address::SlackPerson { language, .. } => language.clone(),
                    _ => return None,
                };
                let receipt = n.receipt?;
                Some(Address::SlackCopy {
                    channel: receipt.channel,
                    ts: receipt.ts,
                    language,
                })
            })
            .collect())
    }

    /// Queues the `grant_ending_soon` warning of every active grant whose
    /// window ends within `lead`. Returns how many were queued.
    pub async fn warn_ending_soon(&self, channels: &Channels, lead: Duration) -> Result<usize, ServiceError> {
        if !channels.any() {
            return Ok(0);
        }
        let now = self.clock.now();
        let horizon = now + chrono::Duration::from_std(lead).unwrap_or_default();
        let active = self
            .grants_where(&GrantFilter {
                states: vec![GrantState::Active],
                ..GrantFilter::default()
            })
            .await?;
        let ending: Vec<Grant> = active
            .into_iter()
            .filter(|g| g.ends_at > now && g.ends_at <= horizon)
            .collect();
        if ending.is_empty() {
            return Ok(0);
        }
        let directory = self.directory().await?;
        let mut notifications = Vec::new();
        for grant in ending {
            let Some(request) = self.store.request(grant.request).await? else {
                continue;
            };
            let Some(workflow) = self.workflow_of(&request, &directory) else {
                continue;
            };
            let event = Event {
                id: Event::ending_soon_id(grant.id, grant.ends_at),
                kind: EventKind::GrantEndingSoon,
                at: now,
                request: Some(request_facts(&request, Some(&grant), &directory)),
                configuration: None,
                grant: Some(grant_facts(&grant)),
                review: None,
                detail: None,
                chat: ChatActions {
                    approve: false,
                    extend: workflow.extension_allowed,
                },
            };
            for address in self.addresses(&event, &request, &workflow, channels, &directory) {
                notifications.push(Notification::new(event.clone(), address, now));
            }
        }
        let fresh = self.to_write(notifications).await?;
        if fresh.is_empty() {
            return Ok(0);
        }
        // Each on its own: one another broker queued first conflicts alone.
        let done = self.commit_each(&fresh).await;
        Ok(done.iter().filter(|r| r.is_ok()).count())
    }

    /// Queues the `agent_offline` event of every configuration none of
    /// whose active agents has been connected to any broker for
    /// `watch.after`: once per offline episode (named by its last
    /// contact), whichever broker sees it first. Returns how many
    /// notifications were queued.
    pub async fn warn_agents_offline(
        &self,
        channels: &Channels,
        watch: &Watch,
    ) -> Result<usize, ServiceError> {
        if !channels.any() {
            return Ok(0);
        }
        let offline = self.offline_configurations(watch).await?;
        if offline.is_empty() {
            return Ok(0);
        }
        let directory = self.directory().await?;
        let now = self.clock.now();
        let mut notifications = Vec::new();
        for o in offline {
            let name = directory
                .configurations
                .get(o.configuration.as_str())
                .map(|c| c.display_name.clone())
                .unwrap_or_default();
            let event = Event {
                id: Event::agent_offline_id(&o.configuration, o.since),
                kind: EventKind::AgentOffline,
                at: now,
                request: None,
                configuration: Some(ConfigurationFacts {
                    id: o.configuration.clone(),
                    name,
                    last_contact: o.since,
                    agents: u32::try_from(o.agents).unwrap_or(u32::MAX),
                }),
                grant: None,
                review: None,
                detail: None,
                chat: ChatActions::default(),
            };
            for address in self.configuration_addresses(&o.configuration, channels, &directory) {
                notifications.push(Notification::new(event.clone(), address, now));
            }
        }
        let fresh = self.to_write(notifications).await?;
        if fresh.is_empty() {
            return Ok(0);
        }
        let done = self.commit_each(&fresh).await;
        let mut told = BTreeSet::new();
        for (n, r) in fresh.iter().zip(&done) {
            let Some(c) = n.event.configuration.as_ref().filter(|_| r.is_ok()) else {
                continue;
            };
            if told.insert(&c.id) {
                tracing::warn!(
                    configuration = %c.id,
                    last_contact = %c.last_contact,
                    "no agent of a configuration is connected: its grants and revokes wait"
                );
            }
        }
        Ok(done.iter().filter(|r| r.is_ok()).count())
    }

    /// Writes each notification in a change of its own (one flush for
    /// all): a compare-and-set lost by one does not stop the others.
    async fn commit_each(
        &self,
        notifications: &[Notification],
    ) -> Vec<Result<crate::store::Committed, crate::store::StoreError>> {
        let changes = notifications
            .iter()
            .map(|n| Change {
                notifications: vec![n.clone()],
                ..Change::default()
            })
            .collect();
        self.store.commit_all(changes).await
    }

    /// Delivers the notifications due now (up to [`DELIVER_BATCH`], a few
    /// at once). Returns how many it tried.
    pub async fn deliver_notifications(&self, channels: &Channels) -> Result<usize, ServiceError> {
        let now = self.clock.now();
        let due = self.store.due_notifications(now, DELIVER_BATCH).await?;
        if due.is_empty() {
            return Ok(0);
        }
        // Claim each (another broker may have taken some: those conflict).
        let claims: Vec<Notification> = due.iter().map(|n| n.claim(now)).collect();
        let results = self.commit_each(&claims).await;
        let claimed: Vec<Notification> = claims
            .into_iter()
            .zip(results)
            .filter_map(|(n, r)| r.ok().map(|c| c.stored(n)))
            .collect();
        let tried = claimed.len();
        let settled: Vec<Notification> = futures_util::stream::iter(claimed)
            .map(|n| async move {
                let outcome = channels.deliver(&n, self.clock.now()).await;
                self.settle(n, outcome)
            })
            .buffer_unordered(DELIVER_AT_ONCE)
            .collect()
            .await;
        let results = self.commit_each(&settled).await;
        for (sent, r) in settled.iter().zip(results) {
            let Err(e) = r else { continue };
            // A message changed in place was retargeted to a newer event
            // while this try was under way: that one goes now, landing last.
            let newer = match self.store.notification(&sent.id).await? {
                Some(stored) => stored.after_older_try(sent, self.clock.now()),
                None => None,
            };
            match newer {
                Some(n) => {
                    if let Some(Err(e)) = self.commit_each(&[n]).await.pop() {
                        tracing::debug!(error = %e, "a retargeted notification goes when its claim runs out");
                    }
                }
                // Its claim ran out and another broker took it: it may be
                // delivered twice (receivers deduplicate on the event id).
                None => tracing::warn!(error = %e, "recording a notification's delivery failed"),
            }
        }
        Ok(tried)
    }

    /// The notification after one try, counted.
    fn settle(
        &self,
        n: Notification,
        outcome: Result<Option<crate::notify::queue::Receipt>, crate::notify::queue::DeliveryError>,
    ) -> Notification {
        let now = self.clock.now();
        let channel = vec![("channel", n.address.channel().to_owned())];
        match outcome {
            Ok(receipt) => {
                self.metrics.notifications_delivered.get_or_create(&channel).inc();
                n.delivered(now, receipt)
            }
            Err(e) => {
                self.metrics.notifications_failed.get_or_create(&channel).inc();
                let next = n.failed(&e, now, rand::thread_rng().gen(), self.channels.retry_cap());
                if matches!(next.settled, Some(Settled::GaveUp { .. })) {
                    self.metrics.notifications_given_up.get_or_create(&channel).inc();
                    tracing::error!(
                        notification = %n.id,
                        attempts = n.attempts,
                        error = %e,
                        "notification given up"
                    );
                } else {
                    tracing::warn!(
                        notification = %n.id,
                        attempts = n.attempts,
                        error = %e,
                        "notification not delivered; trying again later"
                    );
                }
                next
            }
        }
    }

    /// How delivery to each address is getting on (admins and auditors).
    pub async fn notification_status(
        &self,
        actor: &User,
    ) -> Result<Vec<jitgate_shared::v1::api::NotificationEndpointView>, ServiceError> {
        super::admin::require_privileged(actor)?;
        Ok(crate::notify::queue::status(&self.store.notifications().await?))
    }

    /// Deletes notifications settled more than [`KEEP_SETTLED`] ago.
    pub async fn sweep_notifications(&self) -> Result<usize, ServiceError> {
        let before = self.clock.now() - chrono::Duration::from_std(KEEP_SETTLED).unwrap_or_default();
        let old: Vec<String> = self
            .store
            .notifications()
            .await?
            .into_iter()
            .filter(|n| n.settled_before(before))
            .map(|n| n.id)
            .collect();
        let count = old.len();
        for chunk in old.chunks(500) {
            self.store
                .commit(Change {
                    delete_notifications: chunk.to_vec(),
                    ..Change::default()
                })
                .await?;
        }
        Ok(count)
    }
}

/// The address of a channel destination (`email:`, `webhook:`, `slack:`,
/// `teams:`); `None` for people (`requester`, `approvers`, whom the
/// router finds itself) and for channels this broker has not configured.
fn channel_address(destination: &Destination, channels: &Channels) -> Option<Address> {
    let address = match destination {
        Destination::Requester | Destination::Approvers => return None,
        Destination::Slack(channel) if channels.slack().is_some() => Address::SlackChannel {
            channel: channel.clone(),
        },
        Destination::Email(to) if channels.has_email() => Address::Email {
            to: to.clone(),
            name: String::new(),
            language: None,
        },
        Destination::Webhook(name) if channels.has_webhook(name) => Address::Webhook {
            endpoint: name.clone(),
        },
        Destination::Teams(name) if channels.has_teams(name) => Address::Teams {
            workflow: name.clone(),
        },
        Destination::Email(_) | Destination::Webhook(_) | Destination::Slack(_) | Destination::Teams(_) => {
            tracing::warn!(
                destination = %destination,
                "workflows.toml routes events to a channel this broker has not configured; skipped"
            );
            return None;
        }
    };
    Some(address)
}

fn grant_facts(g: &Grant) -> GrantFacts {
    GrantFacts {
        id: g.id,
        starts_at: g.starts_at,
        ends_at: g.ends_at,
    }
}

fn request_facts(request: &Request, grant: Option<&Grant>, directory: &Directory) -> RequestFacts {
    RequestFacts {
        id: request.id,
        requester: directory.person(&request.requester),
        resource: request.resource.clone(),
        resource_name: directory
            .resources
            .get(request.resource.as_str())
            .map(|r| r.resource.display_name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| request.resource.to_string()),
        duration_seconds: request.duration_seconds,
        justification: request.justification.clone(),
        ticket: request.ticket.clone(),
        break_glass: request.break_glass,
        state: request.state,
        approvals: request.approvals(),
        approvals_required: request.approvals_required,
        chain: grant.map_or_else(Vec::new, |g| g.chain.iter().map(ToString::to_string).collect()),
    }
}

/// The event `record` raised, with the facts as they stand now.
fn event_of(
    record: &AuditRecord,
    kind: EventKind,
    request: &Request,
    grant: Option<&Grant>,
    directory: &Directory,
) -> Event {
    let review = match (&record.event, &record.actor) {
        (
            AuditEvent::RequestReviewed {
                decision, comment, ..
            },
            Actor::User(by),
        ) => Some(ReviewFacts {
            reviewer: directory.person(by),
            decision: *decision,
            comment: comment.clone(),
        }),
        (AuditEvent::RequestApproved { .. } | AuditEvent::RequestDenied { .. }, _) => {
            request.reviews.last().map(|v| ReviewFacts {
                reviewer: directory.person(&v.reviewer),
                decision: v.decision,
                comment: v.comment.clone(),
            })
        }
        _ => None,
    };
    let detail = match &record.event {
        AuditEvent::GrantEnded { reason, .. } => Some(end_reason(reason).to_owned()),
        AuditEvent::RevokeFailed { outcome, .. } => Some(match outcome {
            Outcome::Refused { reason } | Outcome::Failed { reason, .. } => reason.clone(),
            other => format!("{other:?}"),
        }),
        _ => None,
    };
    Event {
        id: Event::audit_id(record.seq),
        kind,
        at: record.at,
        request: Some(request_facts(request, grant, directory)),
        configuration: None,
        grant: grant.map(grant_facts),
        review,
        detail,
        chat: ChatActions::default(),
    }
}

/// Whether `kind` settles a request's review: its chat messages change.
fn decides(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::RequestReviewed
            | EventKind::RequestApproved
            | EventKind::RequestDenied
            | EventKind::RequestCancelled
            | EventKind::RequestExpired
    )
}

fn end_reason(reason: &EndReason) -> &'static str {
    match reason {
        EndReason::Expired => "expired",
        EndReason::Revoked => "revoked",
        EndReason::Cancelled => "cancelled",
        EndReason::Deprovisioned => "deprovisioned",
    }
}

/// When the notification loop warns of what is about to happen or has
/// gone quiet.
#[derive(Debug, Clone, Copy)]
pub struct Warnings {
    /// How long before a window ends `grant_ending_soon` is raised.
    pub ending_soon: Duration,
    /// How long without an agent connected makes a configuration offline.
    pub agent_offline_after: Duration,
}

/// Routes, warns and delivers until `shutdown` changes: woken by every
/// change this broker publishes, and at least every second.
pub async fn run(broker: Broker, warnings: Warnings, mut shutdown: watch::Receiver<bool>) {
    let channels = broker.channels.clone();
    if !channels.any() {
        return;
    }
    let mut changes = broker.live.feed.subscribe();
    let warn_every = WARN_EVERY.min(warnings.ending_soon / 4);
    let mut last_warning = tokio::time::Instant::now() - warn_every;
    let offline_every = WARN_EVERY.min(warnings.agent_offline_after / 4);
    let mut last_offline_check = tokio::time::Instant::now() - offline_every;
    let watch = Watch {
        after: chrono::Duration::from_std(warnings.agent_offline_after).unwrap_or(chrono::Duration::MAX),
        started: broker.clock.now(),
    };
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        let mut busy = false;
        match broker.route_notifications(&channels).await {
            Ok(n) => busy |= n == ROUTE_BATCH,
            Err(e) => tracing::warn!(error = %e, "routing notifications failed; trying again"),
        }
        if last_warning.elapsed() >= warn_every {
            last_warning = tokio::time::Instant::now();
            if let Err(e) = broker.warn_ending_soon(&channels, warnings.ending_soon).await {
                tracing::warn!(error = %e, "queueing ending-soon warnings failed; trying again");
            }
        }
        if last_offline_check.elapsed() >= offline_every {
            last_offline_check = tokio::time::Instant::now();
            if let Err(e) = broker.warn_agents_offline(&channels, &watch).await {
                tracing::warn!(error = %e, "queueing agent-offline warnings failed; trying again");
            }
        }
        match broker.deliver_notifications(&channels).await {
            Ok(n) => busy |= n == DELIVER_BATCH,
            Err(e) => tracing::warn!(error = %e, "delivering notifications failed; trying again"),
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = tokio::time::Instant::now();
            if let Err(e) = broker.sweep_notifications().await {
                tracing::warn!(error = %e, "deleting old notifications failed; trying again");
            }
        }
        if busy {
            continue;
        }
        tokio::select! {
            _ = changes.recv() => {}
            _ = tokio::time::sleep(IDLE) => {}
            _ = shutdown.changed() => return,
        }
    }
}
