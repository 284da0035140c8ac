//! What people are told about: the kinds of event, which audit records
//! raise them, and the facts a message shows, taken when the event is
//! routed so a message says what was true then.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{CommandOp, Decision, RequestState};
use jitgate_shared::v1::protocol::Outcome;
use jitgate_shared::v1::{ConfigId, GrantId, RequestId, ResourceId, UserId};
use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;

/// A kind of event people can be told about. Its snake-case name is what
/// `workflows.toml` routes and what webhooks carry (as the CloudEvents
/// `type` suffix).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EventKind {
    RequestCreated,
    /// One approver approved or denied; others may still be needed.
    RequestReviewed,
    RequestApproved,
    RequestDenied,
    /// Nobody decided before the request's pending time ran out.
    RequestExpired,
    RequestCancelled,
    /// Approval was skipped under a break-glass policy.
    BreakGlassUsed,
    /// The window opened; the grant command is on its way.
    GrantActive,
    /// The agent applied the entitlement in the tenant.
    GrantApplied,
    /// A federated grant was confirmed in effect downstream.
    GrantInEffect,
    GrantExtended,
    /// The window ends within the broker's `notify.ending_soon` lead.
    GrantEndingSoon,
    GrantEnded,
    /// A revoke was refused or failed; it is tried again until it works.
    RevokeFailing,
    /// No agent of a configuration has been connected to any broker for
    /// the broker's `notify.agent_offline_after`: its grants and revokes
    /// wait. Routed by the workflows of the configuration's resources.
    AgentOffline,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an audit record's event is about: a request, or a grant (whose
/// request the router reads too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Request(RequestId),
    Grant(GrantId),
}

/// The event an audit record raises, if any, and what it is about.
pub fn raised_by(event: &AuditEvent) -> Option<(EventKind, Subject)> {
    use EventKind as K;
    use Subject::{Grant, Request};
    Some(match event {
        AuditEvent::RequestCreated { request, .. } => (K::RequestCreated, Request(*request)),
        AuditEvent::RequestReviewed { request, .. } => (K::RequestReviewed, Request(*request)),
        AuditEvent::RequestApproved { request } => (K::RequestApproved, Request(*request)),
        AuditEvent::RequestDenied { request } => (K::RequestDenied, Request(*request)),
        AuditEvent::RequestCancelled { request } => (K::RequestCancelled, Request(*request)),
        AuditEvent::RequestPendingExpired { request } => (K::RequestExpired, Request(*request)),
        AuditEvent::BreakGlassUsed { request, .. } => (K::BreakGlassUsed, Request(*request)),
        AuditEvent::GrantActivated { grant, .. } => (K::GrantActive, Grant(*grant)),
        AuditEvent::CommandSettled {
            grant,
            op: CommandOp::Grant,
            outcome: Outcome::Applied | Outcome::AlreadyPresent,
            ..
        } => (K::GrantApplied, Grant(*grant)),
        AuditEvent::GrantEffective { grant, .. } => (K::GrantInEffect, Grant(*grant)),
        AuditEvent::GrantExtended { grant, .. } => (K::GrantExtended, Grant(*grant)),
        AuditEvent::GrantEnded { grant, .. } => (K::GrantEnded, Grant(*grant)),
        AuditEvent::RevokeFailed { grant, .. } => (K::RevokeFailing, Grant(*grant)),
        _ => return None,
    })
}

/// A person as a message names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonFacts {
    pub id: UserId,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A request as a message shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFacts {
    pub id: RequestId,
    pub requester: PersonFacts,
    pub resource: ResourceId,
    pub resource_name: String,
    pub duration_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    pub break_glass: bool,
    pub state: RequestState,
    /// Approvals counted so far, of `approvals_required`.
    pub approvals: u32,
    pub approvals_required: u32,
    /// The configurations a federated grant goes through, first to last
    /// (empty when direct).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
}

/// A grant as a message shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantFacts {
    pub id: GrantId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// A review as a message shows it (for `request_reviewed`, and who
/// decided for `request_approved` / `request_denied`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewFacts {
    pub reviewer: PersonFacts,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A configuration as a message shows it (for `agent_offline`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationFacts {
    pub id: ConfigId,
    pub name: String,
    /// When an agent of it was last connected to a broker.
    pub last_contact: DateTime<Utc>,
    /// Its active agents, none of them connected.
    pub agents: u32,
}

/// One event, with the facts every channel renders from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique and stable: `audit-{seq}` for an event an audit record
    /// raised, `ending-soon-{grant}-{ends_at}` for a warning. Receivers
    /// deduplicate on it.
    pub id: String,
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    /// The request it is about: every event but `agent_offline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestFacts>,
    /// The configuration it is about (`agent_offline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ConfigurationFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewFacts>,
    /// Why, where the event has a reason (a grant's end reason, a revoke's
    /// failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What chat messages of it may offer, by the resource's workflow.
    #[serde(default)]
    pub chat: ChatActions,
}

/// What a chat message may offer: approving and denying in the chat
/// (`approve_in_chat`), extending the window (the workflow allows
/// extensions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatActions {
    pub approve: bool,
    pub extend: bool,
}

impl Event {
    /// The id of an event an audit record raised.
    pub fn audit_id(seq: u64) -> String {
        format!("audit-{seq}")
    }

    /// The id of the ending-soon warning of a grant's window: a new end
    /// (an extension) warns again.
    pub fn ending_soon_id(grant: GrantId, ends_at: DateTime<Utc>) -> String {
        format!("ending-soon-{grant}-{}", ends_at.timestamp())
    }

    /// The id of a configuration's offline episode, named by its last
    /// contact: once back and gone again, a new one.
    pub fn agent_offline_id(configuration: &ConfigId, last_contact: DateTime<Utc>) -> String {
        format!(
            "agent-offline-{configuration}-{}",
            last_contact.timestamp_millis()
        )
    }

    /// The request it is about, if any.
    pub fn request_id(&self) -> Option<RequestId> {
        self.request.as_ref().map(|r| r.id)
    }

    /// What it is about, by id: its request, or its configuration.
    pub fn subject(&self) -> String {
        match (&self.request, &self.configuration) {
            (Some(r), _) => r.id.to_string(),
            (None, Some(c)) => c.id.to_string(),
            (None, None) => String::new(),
        }
    }

    /// Whether messages of it should stand out: break-glass, a revoke
    /// failing, agents offline.
    pub fn alarming(&self) -> bool {
        self.request.as_ref().is_some_and(|r| r.break_glass)
            || matches!(self.kind, EventKind::RevokeFailing | EventKind::AgentOffline)
    }
}

/// An event to start tests from: alice asks for `aws-prod-admin` for an
/// hour, nothing else said; tests change what they look at.
#[cfg(test)]
pub(crate) fn sample() -> Event {
    Event {
        id: Event::audit_id(7),
        kind: EventKind::RequestCreated,
        at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        request: Some(RequestFacts {
            id: RequestId::generate(),
            requester: PersonFacts {
                id: UserId::new("alice").unwrap(),
                name: "Alice".into(),
                email: None,
            },
            resource: ResourceId::new("aws-prod-admin").unwrap(),
            resource_name: "AWS prod admin".into(),
            duration_seconds: 3600,
            justification: None,
            ticket: None,
            break_glass: false,
            state: RequestState::Pending,
            approvals: 0,
            approvals_required: 1,
            chain: vec![],
        }),
        configuration: None,
        grant: None,
        review: None,
        detail: None,
        chat: ChatActions::default(),
    }
}

/// An `agent_offline` event to start tests from: the `aws-prod`
/// configuration's two agents unheard of for five minutes.
#[cfg(test)]
pub(crate) fn sample_agent_offline() -> Event {
    let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let last_contact = at - chrono::Duration::minutes(5);
    let configuration = ConfigId::new("aws-prod").unwrap();
    Event {
        id: Event::agent_offline_id(&configuration, last_contact),
        kind: EventKind::AgentOffline,
        at,
        request: None,
        configuration: Some(ConfigurationFacts {
            id: configuration,
            name: "AWS prod".into(),
            last_contact,
            agents: 2,
        }),
        grant: None,
        review: None,
        detail: None,
        chat: ChatActions::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn names_are_the_serialized_names() {
        for kind in EventKind::VARIANTS {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::Value::from(kind.name()));
            assert_eq!(kind.name().parse::<EventKind>().unwrap(), *kind);
        }
    }

    #[test]
    fn only_a_successful_grant_command_means_applied() {
        let settled = |op, outcome| AuditEvent::CommandSettled {
            command: "c".into(),
            agent: jitgate_shared::v1::AgentId::generate(),
            grant: GrantId::generate(),
            op,
            outcome,
        };
        assert!(matches!(
            raised_by(&settled(CommandOp::Grant, Outcome::Applied)),
            Some((EventKind::GrantApplied, _))
        ));
        assert!(raised_by(&settled(CommandOp::Revoke, Outcome::Revoked)).is_none());
        let refused = Outcome::Refused { reason: "x".into() };
        assert!(raised_by(&settled(CommandOp::Grant, refused)).is_none());
        assert!(raised_by(&AuditEvent::UserSaved {
            user: UserId::new("u").unwrap()
        })
        .is_none());
    }
}
