//! The request state machine.
//!
//! ```text
//! pending ──approve (N of M)──▶ approved ──window opens──▶ active ──▶ ended
//!    │  └──deny (any one)──▶ denied                 │                (expired, revoked)
//!    │  └──TTL passes──────▶ pending_expired        └─cancel─▶ cancelled
//!    └──cancel──▶ cancelled
//! ```
//!
//! Every transition returns a new value carrying the version it was read at;
//! the store accepts it only if the stored version is still that one (and
//! then advances it), so of two racing reviews exactly one outcome wins and
//! the loser is re-evaluated.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{
    CreateRequestBody, Decision, EndReason, RequestKind, RequestState, RequestView, ReviewView,
};
use jitgate_shared::v1::{GrantId, RequestId, ResourceId, UserId};
use serde::{Deserialize, Serialize};

use super::policy::Workflow;
use super::user::{PersonKeys, User};

/// How far in the past a requested start may lie (clock skew between client
/// and broker); earlier starts are refused.
const START_SKEW: chrono::Duration = chrono::Duration::seconds(60);
/// How far ahead a window may be scheduled.
const START_HORIZON: chrono::Duration = chrono::Duration::days(366);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub reviewer: UserId,
    /// Who the reviewer was when reviewing: one vote per person.
    #[serde(default)]
    pub reviewer_keys: PersonKeys,
    pub decision: Decision,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub version: u64,
    pub kind: RequestKind,
    pub requester: UserId,
    /// The requester's person id when the request was made.
    pub requester_person: String,
    /// The requester's verified email (normalised) when the request was
    /// made: an account with the same verified email is the same person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_email: Option<String>,
    /// Who the grant names in the tenant, fixed when the request was made
    /// (empty in records from before: the requester's principal at
    /// approval then).
    #[serde(default)]
    pub principal: String,
    pub resource: ResourceId,
    pub duration_seconds: u64,
    pub justification: Option<String>,
    pub ticket: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub state: RequestState,
    pub end_reason: Option<EndReason>,
    pub created_at: DateTime<Utc>,
    pub pending_expires_at: DateTime<Utc>,
    pub approvals_required: u32,
    pub reviews: Vec<Review>,
    pub break_glass: bool,
    /// The requester was on call on the workflow's schedule when asking.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_call: bool,
    pub grant: Option<GrantId>,
}

/// Why a request or a transition is refused. Messages name the field or state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("duration_seconds must be more than 0")]
    ZeroDuration,
    #[error("duration_seconds {asked} is longer than this resource allows ({max} seconds)")]
    TooLong { asked: u64, max: u64 },
    #[error("justification is required for this resource")]
    JustificationRequired,
    #[error("ticket is required for this resource (pattern `{pattern}`)")]
    TicketRequired { pattern: String },
    #[error("ticket `{ticket}` does not match the pattern `{pattern}`")]
    TicketMismatch { ticket: String, pattern: String },
    #[error("starts_at {starts_at} is in the past")]
    StartsInPast { starts_at: DateTime<Utc> },
    #[error("starts_at {starts_at} is more than a year ahead")]
    StartsTooLate { starts_at: DateTime<Utc> },
    #[error("break_glass is not allowed for this resource")]
    BreakGlassNotAllowed,
    #[error("you may not request this resource")]
    NotPermitted,
    #[error("request is {state:?}, not pending")]
    NotPending { state: RequestState },
    #[error("request stopped accepting reviews at {expired_at}")]
    PendingExpired { expired_at: DateTime<Utc> },
    #[error("you may not review your own request")]
    SelfReview,
    #[error("you may not review this request: `{requester}` who asked for it is the same person as you (linked accounts or the same verified email)")]
    SamePersonAsRequester { requester: UserId },
    #[error("you are not an approver for this resource")]
    NotAnApprover,
    #[error("{reviewer} has already reviewed this request")]
    AlreadyReviewed { reviewer: UserId },
    #[error("the same person has already reviewed this request as `{account}` (linked accounts or the same verified email); one vote per person")]
    AlreadyReviewedAs { account: UserId },
    #[error("only the requester or an admin may cancel this request")]
    NotYours,
    #[error("request is {state:?}; only pending or approved requests can be cancelled")]
    CannotCancel { state: RequestState },
}

/// Who is reviewing, with what policy says about them.
#[derive(Debug, Clone)]
pub struct Reviewer<'a> {
    pub id: &'a UserId,
    pub keys: PersonKeys,
    /// Cedar permits `approve` on this resource for them.
    pub may_approve: bool,
}

/// Who the accounts around a request are now (the requester and earlier
/// reviewers, by account id): accounts may have been linked since the
/// request or a review was recorded. An account missing here is judged by
/// what was recorded.
pub type PersonsNow = std::collections::BTreeMap<UserId, PersonKeys>;

/// The result of a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewOutcome {
    StillPending { approvals: u32, required: u32 },
    Approved,
    Denied,
}

/// A new request, checked against the workflow settings in force.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    pub id: RequestId,
    pub kind: RequestKind,
    pub requester: &'a User,
    pub body: &'a CreateRequestBody,
    pub workflow: &'a Workflow,
    /// Cedar permits `request` (or, for break-glass, `break_glass`).
    pub permitted: bool,
    /// The requester is on call on the workflow's schedule.
    pub on_call: bool,
    pub now: DateTime<Utc>,
}

impl NewRequest<'_> {
    /// The duration the request would ask for, the workflow default if none.
    pub fn duration_seconds(&self) -> u64 {
        self.body
            .duration_seconds
            .unwrap_or(self.workflow.default_duration.as_secs())
    }

    pub fn build(self) -> Result<Request, RequestError> {
        let w = self.workflow;
        let b = self.body;
        // Permission first: someone who may not ask learns nothing of the
        // resource's workflow.
        if !self.permitted {
            return Err(RequestError::NotPermitted);
        }
        let duration = self.duration_seconds();
        if duration == 0 {
            return Err(RequestError::ZeroDuration);
        }
        let max = match self.kind {
            RequestKind::Access => w.max_duration,
            RequestKind::Extension { .. } => w.extension_max_total,
        };
        if Duration::from_secs(duration) > max {
            return Err(RequestError::TooLong {
                asked: duration,
                max: max.as_secs(),
            });
        }
        let justification = b
            .justification
            .as_deref()
            .map(str::trim)
            .filter(|j| !j.is_empty());
        if w.justification_required && justification.is_none() {
            return Err(RequestError::JustificationRequired);
        }
        let ticket = check_ticket(w, b.ticket.as_deref())?;
        if let Some(starts_at) = b.starts_at {
            if starts_at < self.now - START_SKEW {
                return Err(RequestError::StartsInPast { starts_at });
            }
            if starts_at > self.now + START_HORIZON {
                return Err(RequestError::StartsTooLate { starts_at });
            }
        }
        if b.break_glass && !w.break_glass_allowed {
            return Err(RequestError::BreakGlassNotAllowed);
        }
        let on_call_approves = self.on_call && w.auto_approve_on_call;
        let skip_approval = b.break_glass || w.auto_approve || on_call_approves;
        let ttl = chrono::Duration::from_std(w.pending_ttl).unwrap_or(chrono::Duration::days(1));
        Ok(Request {
            id: self.id,
            version: 0,
            kind: self.kind,
            requester: self.requester.id.clone(),
            requester_person: self.requester.person.clone(),
            requester_email: self.requester.verified_email(),
            principal: self.requester.principal(),
            resource: b.resource.clone(),
            duration_seconds: duration,
            justification: justification.map(str::to_owned),
            ticket: ticket.map(str::to_owned),
            starts_at: b.starts_at,
            state: if skip_approval {
                RequestState::Approved
            } else {
                RequestState::Pending
            },
            end_reason: None,
            created_at: self.now,
            pending_expires_at: self.now + ttl,
            approvals_required: if skip_approval { 0 } else { w.approvals_required },
            reviews: Vec::new(),
            break_glass: b.break_glass,
            on_call: self.on_call,
            grant: None,
        })
    }
}

/// The ticket, trimmed, checked against the workflow's `ticket_pattern`
/// (required where there is one). `None` when none was given.
pub fn check_ticket<'t>(w: &Workflow, ticket: Option<&'t str>) -> Result<Option<&'t str>, RequestError> {
    let ticket = ticket.map(str::trim).filter(|t| !t.is_empty());
    if let Some(pattern) = &w.ticket_pattern {
        let shown = pattern_text(pattern);
        match ticket {
            None => return Err(RequestError::TicketRequired { pattern: shown }),
            Some(t) if !pattern.is_match(t) => {
                return Err(RequestError::TicketMismatch {
                    ticket: t.to_owned(),
                    pattern: shown,
                })
            }
            Some(_) => {}
        }
    }
    Ok(ticket)
}

/// Who `account` is: as `recorded` then, and as it is now when known.
fn keys_of(account: &UserId, recorded: &PersonKeys, now_keys: &PersonsNow) -> Vec<PersonKeys> {
    std::iter::once(recorded.clone())
        .chain(now_keys.get(account).cloned())
        .collect()
}

/// Whether any of `a`'s keys names the same person as any of `b`'s.
fn one_person(a: &[PersonKeys], b: &[PersonKeys]) -> bool {
    a.iter().any(|x| b.iter().any(|y| x.same_person(y)))
}

pub fn pattern_text(re: &regex::Regex) -> String {
    // Stored as ^(?:p)$; show the pattern as the admin wrote it.
    let s = re.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
        .to_owned()
}

impl Request {
    fn next(&self) -> Request {
        self.clone()
    }

    pub fn approvals(&self) -> u32 {
        let n = self
            .reviews
            .iter()
            .filter(|r| r.decision == Decision::Approve)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Approvals that count: one per person, none by the requester's
    /// person, judged by what each review recorded and by who the accounts
    /// are now (accounts linked after an approval do not count twice, and
    /// an approval by an account since linked to the requester counts for
    /// nothing).
    pub fn counted_approvals(&self, now_keys: &PersonsNow) -> u32 {
        let requester = keys_of(&self.requester, &self.requester_keys(), now_keys);
        let mut counted: Vec<(&UserId, Vec<PersonKeys>)> = Vec::new();
        for r in self.reviews.iter().filter(|r| r.decision == Decision::Approve) {
            let keys = keys_of(&r.reviewer, &r.reviewer_keys, now_keys);
            if r.reviewer == self.requester || one_person(&keys, &requester) {
                continue;
            }
            if counted
                .iter()
                .any(|(id, k)| *id == &r.reviewer || one_person(k, &keys))
            {
                continue;
            }
            counted.push((&r.reviewer, keys));
        }
        u32::try_from(counted.len()).unwrap_or(u32::MAX)
    }

    /// The requester as recorded when the request was made.
    pub fn requester_keys(&self) -> PersonKeys {
        PersonKeys {
            person: self.requester_person.clone(),
            email: self.requester_email.clone(),
        }
    }

    /// The accounts whose current person a review must be checked against:
    /// the requester and every earlier reviewer.
    pub fn accounts_involved(&self) -> Vec<&UserId> {
        std::iter::once(&self.requester)
            .chain(self.reviews.iter().map(|r| &r.reviewer))
            .collect()
    }

    /// Applies one review. Any deny ends the request; the N-th approval
    /// approves it. Nobody reviews a request of their own person (same
    /// account, linked accounts, same verified email, as recorded or as
    /// they are now in `now_keys`), and a person reviews once, through
    /// whichever account. Refused after the pending TTL even if the expiry
    /// job has not run yet.
    pub fn review(
        &self,
        reviewer: &Reviewer<'_>,
        now_keys: &PersonsNow,
        decision: Decision,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(Request, ReviewOutcome), RequestError> {
        self.check_reviewer(reviewer, now_keys, now)?;
        let mut next = self.next();
        next.reviews.push(Review {
            reviewer: reviewer.id.clone(),
            reviewer_keys: reviewer.keys.clone(),
            decision,
            comment,
            at: now,
        });
        let approvals = next.counted_approvals(now_keys);
        let outcome = match decision {
            Decision::Deny => {
                next.state = RequestState::Denied;
                ReviewOutcome::Denied
            }
            Decision::Approve if approvals >= next.approvals_required => {
                next.state = RequestState::Approved;
                ReviewOutcome::Approved
            }
            Decision::Approve => ReviewOutcome::StillPending {
                approvals,
                required: next.approvals_required,
            },
        };
        Ok((next, outcome))
    }

    /// Whether `reviewer` may review this request now, by the rules of
    /// [`Request::review`] (which every channel's review goes through; an
    /// inbox lists what passes, or what its person already reviewed).
    pub fn check_reviewer(
        &self,
        reviewer: &Reviewer<'_>,
        now_keys: &PersonsNow,
        now: DateTime<Utc>,
    ) -> Result<(), RequestError> {
        if self.state != RequestState::Pending {
            return Err(RequestError::NotPending { state: self.state });
        }
        if now >= self.pending_expires_at {
            return Err(RequestError::PendingExpired {
                expired_at: self.pending_expires_at,
            });
        }
        if reviewer.id == &self.requester {
            return Err(RequestError::SelfReview);
        }
        let reviewer_keys = std::slice::from_ref(&reviewer.keys);
        let requester = keys_of(&self.requester, &self.requester_keys(), now_keys);
        if one_person(reviewer_keys, &requester) {
            return Err(RequestError::SamePersonAsRequester {
                requester: self.requester.clone(),
            });
        }
        if !reviewer.may_approve {
            return Err(RequestError::NotAnApprover);
        }
        if self.reviews.iter().any(|r| &r.reviewer == reviewer.id) {
            return Err(RequestError::AlreadyReviewed {
                reviewer: reviewer.id.clone(),
            });
        }
        let earlier = self
            .reviews
            .iter()
            .find(|r| one_person(reviewer_keys, &keys_of(&r.reviewer, &r.reviewer_keys, now_keys)));
        if let Some(r) = earlier {
            return Err(RequestError::AlreadyReviewedAs {
                account: r.reviewer.clone(),
            });
        }
        Ok(())
    }

    /// Cancels a pending request, or an approved one whose window has not
    /// opened. Only the requester or an admin may.
    pub fn cancel(&self, by: &UserId, by_admin: bool) -> Result<Request, RequestError> {
        if by != &self.requester && !by_admin {
            return Err(RequestError::NotYours);
        }
        match self.state {
            RequestState::Pending | RequestState::Approved => {
                let mut next = self.next();
                next.state = RequestState::Cancelled;
                next.end_reason = Some(EndReason::Cancelled);
                Ok(next)
            }
            state => Err(RequestError::CannotCancel { state }),
        }
    }

    /// The pending TTL has passed: the request can no longer be approved.
    /// `None` when the request is not pending or the TTL has not passed.
    pub fn expire_pending(&self, now: DateTime<Utc>) -> Option<Request> {
        (self.state == RequestState::Pending && now >= self.pending_expires_at).then(|| {
            let mut next = self.next();
            next.state = RequestState::PendingExpired;
            next
        })
    }

    /// Records the grant made for this approved request; `active` when its
    /// window opened at once.
    pub fn with_grant(&self, grant: GrantId, active: bool) -> Request {
        let mut next = self.next();
        next.grant = Some(grant);
        if active {
            next.state = RequestState::Active;
        }
        next
    }

    pub fn activated(&self) -> Request {
        let mut next = self.next();
        next.state = RequestState::Active;
        next
    }

    pub fn ended(&self, reason: EndReason) -> Request {
        let mut next = self.next();
        next.state = if reason == EndReason::Cancelled {
            RequestState::Cancelled
        } else {
            RequestState::Ended
        };
        next.end_reason = Some(reason);
        next
    }

    pub fn view(&self) -> RequestView {
        RequestView {
            id: self.id,
            kind: self.kind.clone(),
            requester: self.requester.clone(),
            principal: self.principal.clone(),
            resource: self.resource.clone(),
            duration_seconds: self.duration_seconds,
            justification: self.justification.clone(),
            ticket: self.ticket.clone(),
            starts_at: self.starts_at,
            state: self.state,
            end_reason: self.end_reason,
            created_at: self.created_at,
            pending_expires_at: self.pending_expires_at,
            approvals_required: self.approvals_required,
            reviews: self
                .reviews
                .iter()
                .map(|r| ReviewView {
                    reviewer: r.reviewer.clone(),
                    person: r.reviewer_keys.person.clone(),
                    decision: r.decision,
                    comment: r.comment.clone(),
                    at: r.at,
                })
                .collect(),
            break_glass: self.break_glass,
            grant: self.grant,
        }
    }
}

#[cfg(test)]
mod tests;
