//! Reading the audit log by what records are about: who acted or was
//! acted on, which resource, which kind of record, when. Pure: the
//! service reads the records and the ids the filter needs
//! ([`Related`]), this module decides which records match.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::{AgentId, ConfigId, GrantId, RequestId, ResourceId, UserId};

use super::{Actor, AuditEvent, AuditRecord};

impl AuditEvent {
    /// Every record kind, as written in the log's `type` field.
    pub const KINDS: &'static [&'static str] = <AuditEvent as strum::VariantNames>::VARIANTS;

    /// This record's kind (its `type` in the log).
    pub fn kind(&self) -> &'static str {
        self.into()
    }

    /// What this event names, for filters and for showing what a record is
    /// about.
    pub fn subjects(&self) -> Subjects<'_> {
        use AuditEvent as E;
        let mut s = Subjects::default();
        match self {
            E::RequestCreated {
                request, resource, ..
            }
            | E::BreakGlassUsed { request, resource } => {
                s.requests.push(*request);
                s.resource = Some(resource);
            }
            E::RequestReviewed { request, .. }
            | E::RequestApproved { request }
            | E::RequestDenied { request }
            | E::RequestCancelled { request }
            | E::RequestPendingExpired { request } => s.requests.push(*request),
            E::GrantScheduled { grant, request, .. } => {
                s.grants.push(*grant);
                s.requests.push(*request);
            }
            E::GrantActivated {
                grant, configuration, ..
            }
            | E::GrantEnded {
                grant, configuration, ..
            } => {
                s.grants.push(*grant);
                s.configuration = Some(configuration);
            }
            E::GrantExtended { grant, .. } | E::RevokeForceClosed { grant, .. } => s.grants.push(*grant),
            E::RevokeSuperseded { grant, by, .. } => s.grants.extend([*grant, *by]),
            E::GrantEffective {
                grant,
                agent,
                configuration,
            }
            | E::GrantRemovalConfirmed {
                grant,
                agent,
                configuration,
            } => {
                s.grants.push(*grant);
                s.agent = Some(*agent);
                s.configuration = Some(configuration);
            }
            E::CommandSettled { agent, grant, .. }
            | E::RevokeFailed { agent, grant, .. }
            | E::AgentSelfRevoked { agent, grant, .. } => {
                s.grants.push(*grant);
                s.agent = Some(*agent);
            }
            E::ConfigurationSaved { configuration } | E::JoinTokenCreated { configuration, .. } => {
                s.configuration = Some(configuration);
            }
            E::ResourceSaved { resource } => s.resource = Some(resource),
            E::UserDeprovisioned {
                user,
                grants_ended,
                requests_cancelled,
                ..
            } => {
                s.user = Some(user);
                s.grants.extend(grants_ended);
                s.requests.extend(requests_cancelled);
            }
            E::UserSaved { user }
            | E::UserProvisioned { user, .. }
            | E::UserReactivated { user }
            | E::SignedIn { user, .. }
            | E::SignInLinkIssued { user, .. }
            | E::SessionEnded { user, .. }
            | E::TokenIssued { user, .. }
            | E::TokenRevoked { user, .. } => s.user = Some(user),
            E::AgentEnrolled {
                agent, configuration, ..
            }
            | E::AgentRevoked { agent, configuration }
            | E::AgentApproved { agent, configuration }
            | E::DriftFound {
                agent, configuration, ..
            } => {
                s.agent = Some(*agent);
                s.configuration = Some(configuration);
            }
            E::AgentCertificateRenewed { agent, .. } => s.agent = Some(*agent),
            E::ChatActionRefused {
                user, request, grant, ..
            } => {
                s.user = user.as_ref();
                s.requests.extend(*request);
                s.grants.extend(*grant);
            }
            E::ScimConnectionCreated { .. }
            | E::ScimConnectionDeleted { .. }
            | E::SignInRefused { .. }
            | E::PoliciesLoaded { .. }
            | E::PoliciesRejected { .. } => {}
        }
        s
    }
}

/// What one audit event names.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Subjects<'a> {
    /// The account the event is about (not the actor).
    pub user: Option<&'a UserId>,
    pub resource: Option<&'a ResourceId>,
    pub configuration: Option<&'a ConfigId>,
    pub agent: Option<AgentId>,
    pub requests: Vec<RequestId>,
    pub grants: Vec<GrantId>,
}

/// Which records a read of the log returns; each field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Acted or acted on by this person (any of their linked accounts),
    /// including what happened to their requests and grants.
    pub person: Option<UserId>,
    /// About this resource: its requests, their grants, the resource itself.
    pub resource: Option<ResourceId>,
    /// Of this kind (one of [`AuditEvent::KINDS`]).
    pub kind: Option<&'static str>,
    /// At or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Before this instant.
    pub until: Option<DateTime<Utc>>,
}

/// The accounts, requests and grants a filter's person or resource stands
/// for, read from the store once per query.
#[derive(Debug, Clone, Default)]
pub struct Related {
    pub person: Option<Owned>,
    pub resource: Option<Owned>,
}

/// What belongs to a person or a resource.
#[derive(Debug, Clone, Default)]
pub struct Owned {
    /// The person's accounts (empty for a resource).
    pub accounts: HashSet<UserId>,
    pub requests: HashSet<RequestId>,
    pub grants: HashSet<GrantId>,
}

impl Owned {
    fn holds(&self, s: &Subjects<'_>) -> bool {
        s.requests.iter().any(|r| self.requests.contains(r))
            || s.grants.iter().any(|g| self.grants.contains(g))
    }
}

/// Why a filter could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown audit record kind `{0}`; one of: {kinds}", kinds = AuditEvent::KINDS.join(", "))]
    UnknownKind(String),
    #[error("the time range is empty: `since` ({since}) is not before `until` ({until})")]
    EmptyRange {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

/// The kind named `name`, if the log has such a kind.
pub fn kind_named(name: &str) -> Result<&'static str, FilterError> {
    AuditEvent::KINDS
        .iter()
        .find(|k| **k == name.trim())
        .copied()
        .ok_or_else(|| FilterError::UnknownKind(name.to_owned()))
}

/// A filter as people and clients write it: every field text, empty for
/// none (the console's filter form, the API's query).
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterText<'a> {
    pub person: &'a str,
    pub resource: &'a str,
    pub kind: &'a str,
    /// RFC 3339, or a `datetime-local` value (`2026-11-29T09:30`) taken
    /// as UTC.
    pub since: &'a str,
    pub until: &'a str,
}

impl FilterText<'_> {
    /// The filter, or what is wrong with it (naming the field and value).
    pub fn parse(&self) -> Result<AuditFilter, String> {
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let filter = AuditFilter {
            person: text(self.person)
                .map(|p| UserId::new(p.clone()).map_err(|e| format!("person `{p}`: {e}")))
                .transpose()?,
            resource: text(self.resource)
                .map(|r| ResourceId::new(r.clone()).map_err(|e| format!("resource `{r}`: {e}")))
                .transpose()?,
            kind: text(self.kind)
                .map(|k| kind_named(&k).map_err(|e| e.to_string()))
                .transpose()?,
            since: text(self.since).map(|t| instant("since", &t)).transpose()?,
            until: text(self.until).map(|t| instant("until", &t)).transpose()?,
        };
        filter.check().map_err(|e| e.to_string())?;
        Ok(filter)
    }
}

/// A time as written in a filter: RFC 3339, or a `datetime-local` value
/// taken as UTC.
fn instant(field: &str, value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(value, f).ok())
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{field} `{value}`: not a time; like 2026-11-29T09:30 (UTC)"))
}

impl AuditFilter {
    /// Refuses a filter that can match nothing by construction.
    pub fn check(&self) -> Result<(), FilterError> {
        match (self.since, self.until) {
            (Some(since), Some(until)) if since >= until => Err(FilterError::EmptyRange { since, until }),
            _ => Ok(()),
        }
    }

    /// Whether `record` belongs in the result; `related` holds what the
    /// filter's person and resource own.
    pub fn matches(&self, record: &AuditRecord, related: &Related) -> bool {
        if self.kind.is_some_and(|k| k != record.event.kind())
            || self.since.is_some_and(|t| record.at < t)
            || self.until.is_some_and(|t| record.at >= t)
        {
            return false;
        }
        let subjects = record.event.subjects();
        let person_ok = match (&self.person, &related.person) {
            (None, _) => true,
            (Some(p), owned) => {
                let is_theirs = |u: &UserId| u == p || owned.as_ref().is_some_and(|o| o.accounts.contains(u));
                matches!(&record.actor, Actor::User(u) if is_theirs(u))
                    || subjects.user.is_some_and(is_theirs)
                    || owned.as_ref().is_some_and(|o| o.holds(&subjects))
            }
        };
        let resource_ok = match (&self.resource, &related.resource) {
            (None, _) => true,
            (Some(r), owned) => {
                subjects.resource == Some(r) || owned.as_ref().is_some_and(|o| o.holds(&subjects))
            }
        };
        person_ok && resource_ok
    }

    /// Whether any field narrows the result.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEntry, AuditHead};
    use jitgate_shared::v1::api::Decision;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn record(minute: i64, actor: Actor, event: AuditEvent) -> AuditRecord {
        AuditHead::default()
            .append(AuditEntry {
                at: at(minute),
                actor,
                event,
            })
            .0
    }

    fn user(id: &str) -> UserId {
        id.parse().unwrap()
    }

    #[test]
    fn every_kind_is_the_logs_type_field() {
        let event = AuditEvent::RequestApproved {
            request: RequestId::generate(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.kind());
        assert!(AuditEvent::KINDS.contains(&"request_approved"));
        assert!(AuditEvent::KINDS.contains(&"grant_removal_confirmed"));
        assert!(AuditEvent::KINDS
            .iter()
            .all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        assert_eq!(kind_named(" grant_ended "), Ok("grant_ended"));
        let e = kind_named("grant_over").unwrap_err().to_string();
        assert!(e.contains("`grant_over`") && e.contains("grant_ended"), "{e}");
    }

    #[test]
    fn a_person_matches_what_they_did_what_was_done_to_them_and_their_requests() {
        let (alice, alice_work, bob) = (user("alice"), user("alice-work"), user("bob"));
        let (request, grant, other) = (RequestId::generate(), GrantId::generate(), RequestId::generate());
        let related = Related {
            person: Some(Owned {
                accounts: [alice.clone(), alice_work.clone()].into(),
                requests: [request].into(),
                grants: [grant].into(),
            }),
            resource: None,
        };
        let filter = AuditFilter {
            person: Some(alice.clone()),
            ..AuditFilter::default()
        };
        let reviewed = |who: &UserId, r| {
            record(
                1,
                Actor::User(who.clone()),
                AuditEvent::RequestReviewed {
                    request: r,
                    decision: Decision::Approve,
                    comment: None,
                },
            )
        };
        // Bob reviewing Alice's request, Alice reviewing Bob's through her
        // other account, a revoke by the system of Alice's grant.
        assert!(filter.matches(&reviewed(&bob, request), &related));
        assert!(filter.matches(&reviewed(&alice_work, other), &related));
        assert!(!filter.matches(&reviewed(&bob, other), &related));
        let ended = record(
            2,
            Actor::System,
            AuditEvent::GrantEnded {
                grant,
                configuration: "aws".parse().unwrap(),
                reason: jitgate_shared::v1::api::EndReason::Expired,
                lease_still_held: false,
                command: None,
            },
        );
        assert!(filter.matches(&ended, &related));
        let token = record(
            3,
            Actor::User(bob.clone()),
            AuditEvent::TokenRevoked {
                user: alice_work.clone(),
                token: "t".into(),
            },
        );
        assert!(filter.matches(&token, &related));
    }

    #[test]
    fn a_resource_matches_its_requests_and_their_grants() {
        let resource: ResourceId = "aws-admin".parse().unwrap();
        let (request, grant) = (RequestId::generate(), GrantId::generate());
        let related = Related {
            person: None,
            resource: Some(Owned {
                requests: [request].into(),
                grants: [grant].into(),
                ..Owned::default()
            }),
        };
        let filter = AuditFilter {
            resource: Some(resource.clone()),
            ..AuditFilter::default()
        };
        let saved = record(0, Actor::System, AuditEvent::ResourceSaved { resource });
        let superseded = record(
            0,
            Actor::System,
            AuditEvent::RevokeSuperseded {
                command: "c".into(),
                grant: GrantId::generate(),
                by: grant,
            },
        );
        let other = record(
            0,
            Actor::System,
            AuditEvent::RequestApproved {
                request: RequestId::generate(),
            },
        );
        assert!(filter.matches(&saved, &related));
        assert!(filter.matches(&superseded, &related));
        assert!(!filter.matches(&other, &related));
    }

    #[test]
    fn kind_and_time_narrow_and_an_empty_range_is_refused() {
        let event = AuditEvent::RequestApproved {
            request: RequestId::generate(),
        };
        let r = record(10, Actor::System, event);
        let related = Related::default();
        let f = |kind: Option<&'static str>, since: Option<i64>, until: Option<i64>| AuditFilter {
            kind,
            since: since.map(at),
            until: until.map(at),
            ..AuditFilter::default()
        };
        assert!(f(Some("request_approved"), Some(10), Some(11)).matches(&r, &related));
        assert!(!f(Some("request_denied"), None, None).matches(&r, &related));
        assert!(!f(None, Some(11), None).matches(&r, &related));
        // `until` is exclusive.
        assert!(!f(None, None, Some(10)).matches(&r, &related));
        assert!(f(None, None, None).is_empty());
        let e = f(None, Some(5), Some(5)).check().unwrap_err().to_string();
        assert!(e.contains("is not before"), "{e}");
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever is typed into the filter, it parses or says which
        /// field is wrong; never a panic.
        #[test]
        fn any_filter_text_parses_or_names_the_field(
            person in ".{0,20}", resource in ".{0,20}", kind in "[a-z_]{0,24}|.{0,10}",
            since in "[0-9T:Z+ -]{0,25}|.{0,10}", until in "[0-9T:Z+ -]{0,25}",
        ) {
            let text = FilterText { person: &person, resource: &resource, kind: &kind, since: &since, until: &until };
            if let Err(e) = text.parse() {
                prop_assert!(
                    ["person `", "resource `", "unknown audit record kind", "since `", "until `", "is not before"]
                        .iter()
                        .any(|f| e.contains(f)),
                    "{e}"
                );
            }
        }
    }
}
