//! Typed queries for the store's list reads. Each field narrows the result
//! (the default matches everything), so a SQL backend can turn a query into
//! a `WHERE` over indexed columns. [`matches`](GrantFilter::matches) is the
//! definition every backend agrees with: the embedded store evaluates it
//! directly, and the conformance suite checks other backends against it.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{GrantState, RequestState};
use jitgate_shared::v1::{ConfigId, ResourceId, UserId};

use crate::domain::grant::Grant;
use crate::domain::request::Request;
use crate::domain::session::Session;
use crate::domain::user::ApiToken;
use crate::identity::scim::ScimResource;

/// Which grants a read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    /// Held by this user.
    pub user: Option<UserId>,
    /// In one of these states (empty: any).
    pub states: Vec<GrantState>,
    /// Only grants whose revoke keeps failing.
    pub revoke_failing: bool,
    /// Only federated grants whose downstream entitlement an agent of this
    /// configuration should check (see [`Grant::awaiting_check`]).
    pub awaiting_check_in: Option<ConfigId>,
    /// Not ended, or ended at or after this instant.
    pub ended_since: Option<DateTime<Utc>>,
}

impl GrantFilter {
    /// Grants not ended yet (scheduled or active).
    pub fn open() -> Self {
        Self {
            states: vec![GrantState::Scheduled, GrantState::Active],
            ..Self::default()
        }
    }

    pub fn matches(&self, g: &Grant) -> bool {
        self.user.as_ref().is_none_or(|u| &g.user == u)
            && (self.states.is_empty() || self.states.contains(&g.state))
            && (!self.revoke_failing || g.revoke_failing.is_some())
            && self
                .awaiting_check_in
                .as_ref()
                .is_none_or(|c| g.awaiting_check(c).is_some())
            && self
                .ended_since
                .is_none_or(|since| g.ended_at.is_none_or(|t| t >= since))
    }
}

/// Which requests a read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Made by this user.
    pub requester: Option<UserId>,
    /// In one of these states (empty: any).
    pub states: Vec<RequestState>,
    /// For this resource (no index in SQL backends: for rare reads such
    /// as the audit log's resource filter).
    pub resource: Option<ResourceId>,
}

impl RequestFilter {
    pub fn matches(&self, r: &Request) -> bool {
        self.matches_fields(&r.requester, &r.state, &r.resource)
    }

    /// [`matches`](Self::matches) on a stored request's head alone: a scan
    /// decodes whole only what it keeps.
    pub fn matches_head(&self, h: &RequestHead) -> bool {
        self.matches_fields(&h.requester, &h.state, &h.resource)
    }

    fn matches_fields(&self, requester: &UserId, state: &RequestState, resource: &ResourceId) -> bool {
        self.requester.as_ref().is_none_or(|u| requester == u)
            && (self.states.is_empty() || self.states.contains(state))
            && self.resource.as_ref().is_none_or(|x| resource == x)
    }
}

/// The fields of a stored request that a [`RequestFilter`] looks at, read
/// without the rest of the record.
#[derive(Debug, serde::Deserialize)]
pub struct RequestHead {
    pub requester: UserId,
    pub state: RequestState,
    pub resource: ResourceId,
}

/// Which API tokens a read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFilter {
    /// Of this user.
    pub user: Option<UserId>,
    /// Issued to this sign-in session.
    pub session: Option<String>,
    /// With this id (the start of its hash, as admins list it).
    pub id: Option<String>,
    /// Still valid at this instant.
    pub valid_at: Option<DateTime<Utc>>,
    /// No longer valid at this instant.
    pub expired_at: Option<DateTime<Utc>>,
}

impl TokenFilter {
    pub fn matches(&self, t: &ApiToken) -> bool {
        self.user.as_ref().is_none_or(|u| &t.user == u)
            && self
                .session
                .as_deref()
                .is_none_or(|s| t.session.as_deref() == Some(s))
            && self.id.as_deref().is_none_or(|id| t.id() == id)
            && self.valid_at.is_none_or(|at| t.is_valid_at(at))
            && self.expired_at.is_none_or(|at| !t.is_valid_at(at))
    }
}

/// Which sign-in sessions a read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Of this user.
    pub user: Option<UserId>,
    /// Only sessions nobody ended (they may have expired).
    pub not_ended: bool,
    /// Only sessions live at this instant (not ended, not expired).
    pub live_at: Option<DateTime<Utc>>,
}

impl SessionFilter {
    pub fn matches(&self, s: &Session) -> bool {
        self.user.as_ref().is_none_or(|u| &s.user == u)
            && (!self.not_ended || s.ended_at.is_none())
            && self.live_at.is_none_or(|at| s.is_live(at))
    }
}

/// Which SCIM resources of a connection and kind a read returns. A SCIM
/// filter expression is evaluated by the SCIM service over the rendered
/// resources; names have their own index
/// ([`Store::scim_named`](super::Store::scim_named)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScimFilter {
    /// Groups with this member id.
    pub member: Option<String>,
}

impl ScimFilter {
    pub fn matches(&self, r: &ScimResource) -> bool {
        self.member.as_deref().is_none_or(|m| r.member_ids().contains(m))
    }
}
