//! Grants: an approved request turned into an entitlement for a window
//! `[starts_at, ends_at)`.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{CommandOp, EndReason, GrantState, GrantView, RevokeFailing};
use jitgate_shared::v1::protocol::Outcome;
use jitgate_shared::v1::signing::ProvisionOnDemand;
use jitgate_shared::v1::{ConfigId, Entitlement, GrantId, RequestId, ResourceId, UserId};
use serde::{Deserialize, Serialize};

use super::request::Request;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: GrantId,
    pub version: u64,
    pub request: RequestId,
    pub user: UserId,
    pub resource: ResourceId,
    /// What was applied; a revoke undoes exactly this, whatever the
    /// configuration says by then.
    pub entitlement: Entitlement,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub state: GrantState,
    pub end_reason: Option<EndReason>,
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<UserId>,
    pub extensions: u32,
    pub break_glass: bool,
    /// When an agent confirmed the entitlement in place.
    #[serde(default)]
    pub applied_at: Option<DateTime<Utc>>,
    /// When an agent confirmed it gone.
    #[serde(default)]
    pub removed_at: Option<DateTime<Utc>>,
    /// The last failure an agent reported for this grant's commands.
    #[serde(default)]
    pub delivery_error: Option<String>,
    /// The workflow asked, at approval, to cap sessions to the window.
    #[serde(default)]
    pub cap_session_duration: bool,
    /// The workflow asked, at approval, to end sign-in sessions on revoke.
    #[serde(default)]
    pub end_sign_in_sessions: bool,
    /// The configurations walked from the resource's to the one it was
    /// applied in (just the resource's for a direct resource).
    #[serde(default)]
    pub chain: Vec<ConfigId>,
    /// Downstream entitlements an agent can confirm once the directory has
    /// synced (federated grants).
    #[serde(default)]
    pub confirm: Vec<Entitlement>,
    /// When the elevation was known to be in effect where it is used: when
    /// applied, for a direct grant; for a federated one, only once a
    /// downstream agent confirms it (never before).
    #[serde(default)]
    pub effective_at: Option<DateTime<Utc>>,
    /// For a federated grant: when an agent where the resource is used
    /// confirmed it gone after the revoke (the directory had synced).
    #[serde(default)]
    pub removal_confirmed_at: Option<DateTime<Utc>>,
    /// For a federated grant whose directory provisions the tenant through
    /// an enterprise app jitgate knows: provision at once after applying.
    #[serde(default)]
    pub provision_on_demand: Option<ProvisionOnDemand>,
    /// The revoke ending this grant's entitlement was refused or failed for
    /// good and is being tried again; cleared when it succeeds or an admin
    /// force-closes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_failing: Option<RevokeFailing>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("grant has already ended ({reason:?})")]
    AlreadyEnded { reason: Option<EndReason> },
    #[error("grant is {state:?}; only active grants can be extended")]
    NotActive { state: GrantState },
    #[error("extensions are not allowed for this resource")]
    ExtensionNotAllowed,
    #[error("the window would last {total} seconds with this extension; at most {max} seconds are allowed")]
    ExtensionTooLong { total: u64, max: u64 },
    #[error("duration_seconds must be more than 0")]
    ZeroExtension,
    #[error("only the grant's holder or an admin may do this")]
    NotYours,
    #[error("`{user}` may no longer request this resource (policies or groups changed), so the grant cannot be extended")]
    NoLongerEligible { user: UserId },
}

/// How many seconds a window from `starts_at` to `ends_at` may still grow
/// when the whole window may last at most `max_total`.
pub fn extension_room(
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    max_total: std::time::Duration,
) -> u64 {
    let current = u64::try_from((ends_at - starts_at).num_seconds()).unwrap_or(0);
    max_total.as_secs().saturating_sub(current)
}

impl Grant {
    /// The grant for an approved request: the window opens at the requested
    /// start or now, whichever is later.
    pub fn for_request(
        id: GrantId,
        request: &Request,
        entitlement: Entitlement,
        now: DateTime<Utc>,
    ) -> Grant {
        let starts_at = request.starts_at.map_or(now, |s| s.max(now));
        // Requests are checked against the workflow's bounded durations and
        // start horizon; saturate rather than overflow all the same.
        let window = i64::try_from(request.duration_seconds)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .unwrap_or(chrono::Duration::MAX);
        let ends_at = starts_at
            .checked_add_signed(window)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Grant {
            id,
            version: 0,
            request: request.id,
            user: request.requester.clone(),
            resource: request.resource.clone(),
            entitlement,
            starts_at,
            ends_at,
            state: GrantState::Scheduled,
            end_reason: None,
            ended_at: None,
            ended_by: None,
            extensions: 0,
            break_glass: request.break_glass,
            applied_at: None,
            removed_at: None,
            delivery_error: None,
            cap_session_duration: false,
            end_sign_in_sessions: false,
            chain: Vec::new(),
            confirm: Vec::new(),
            effective_at: None,
            removal_confirmed_at: None,
            provision_on_demand: None,
            revoke_failing: None,
        }
    }

    fn next(&self) -> Grant {
        self.clone()
    }

    /// Whether the window should be open at `now`.
    pub fn should_start(&self, now: DateTime<Utc>) -> bool {
        self.state == GrantState::Scheduled && now >= self.starts_at
    }

    pub fn activate(&self) -> Grant {
        let mut g = self.next();
        g.state = GrantState::Active;
        g
    }

    pub fn end(
        &self,
        reason: EndReason,
        by: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<Grant, GrantError> {
        if self.state == GrantState::Ended {
            return Err(GrantError::AlreadyEnded {
                reason: self.end_reason,
            });
        }
        let mut g = self.next();
        g.state = GrantState::Ended;
        g.end_reason = Some(reason);
        g.ended_at = Some(now);
        g.ended_by = by;
        Ok(g)
    }

    /// Moves `ends_at` later by `extra_seconds`, within `max_total` for the
    /// whole window. Limits are checked before any date arithmetic, so no
    /// input can overflow it.
    pub fn extend(&self, extra_seconds: u64, max_total: std::time::Duration) -> Result<Grant, GrantError> {
        if self.state != GrantState::Active {
            return Err(GrantError::NotActive { state: self.state });
        }
        if extra_seconds == 0 {
            return Err(GrantError::ZeroExtension);
        }
        let current = u64::try_from((self.ends_at - self.starts_at).num_seconds()).unwrap_or(0);
        let total = current.saturating_add(extra_seconds);
        let max = max_total.as_secs();
        if extra_seconds > extension_room(self.starts_at, self.ends_at, max_total) {
            return Err(GrantError::ExtensionTooLong { total, max });
        }
        let total = chrono::Duration::try_seconds(i64::try_from(total).unwrap_or(i64::MAX))
            .ok_or(GrantError::ExtensionTooLong { total, max })?;
        let ends_at = self
            .starts_at
            .checked_add_signed(total)
            .ok_or(GrantError::ExtensionTooLong {
                total: total.num_seconds().unsigned_abs(),
                max,
            })?;
        let mut g = self.next();
        g.ends_at = ends_at;
        g.extensions += 1;
        Ok(g)
    }

    /// Seconds from when this grant's access should have ended (its
    /// window's end, or earlier if it was ended early) to `removed`, when
    /// an agent confirmed it gone; 0 if not late.
    pub fn lateness_of(&self, removed: DateTime<Utc>) -> f64 {
        let due = self
            .ended_at
            .map_or(self.ends_at, |ended| ended.min(self.ends_at));
        (removed - due).to_std().unwrap_or_default().as_secs_f64()
    }

    /// Records what an agent reported for one of this grant's commands.
    /// `None` when it changes nothing (a repeat of what is recorded).
    pub fn record_delivery(&self, op: CommandOp, outcome: &Outcome, at: DateTime<Utc>) -> Option<Grant> {
        let mut g = self.next();
        match (op, outcome) {
            (CommandOp::Grant, Outcome::Applied | Outcome::AlreadyPresent) => {
                g.applied_at = g.applied_at.or(Some(at));
                if !g.is_federated() {
                    g.effective_at = g.effective_at.or(Some(at));
                }
                g.delivery_error = None;
            }
            (CommandOp::Revoke, Outcome::Revoked | Outcome::AlreadyAbsent) => {
                g.removed_at = g.removed_at.or(Some(at));
                g.delivery_error = None;
                g.revoke_failing = None;
            }
            (_, Outcome::Refused { reason } | Outcome::Failed { reason, .. }) => {
                g.delivery_error = Some(format!("{op:?} failed: {reason}").to_lowercase());
            }
            // An outcome of the other kind (a revoke answered "applied") is
            // an agent bug; keep the record as it is.
            _ => return None,
        }
        (g != *self).then_some(g)
    }

    /// Records one more failure of the revoke `command` (refused, or failed
    /// for good). The first one starts the failing period.
    pub fn revoke_failed(&self, command: &str, reason: &str, at: DateTime<Utc>) -> Grant {
        let mut g = self.next();
        let failing = match &self.revoke_failing {
            Some(f) if f.command == command => RevokeFailing {
                attempts: f.attempts.saturating_add(1),
                reason: reason.to_owned(),
                ..f.clone()
            },
            _ => RevokeFailing {
                command: command.to_owned(),
                since: at,
                attempts: 1,
                reason: reason.to_owned(),
            },
        };
        g.delivery_error = Some(format!("revoke failed: {reason}").to_lowercase());
        g.revoke_failing = Some(failing);
        g
    }

    /// An admin says the entitlement was removed by hand: the revoke is
    /// closed and the grant counts as removed.
    pub fn revoke_force_closed(&self, at: DateTime<Utc>) -> Grant {
        let mut g = self.next();
        g.revoke_failing = None;
        g.removed_at = g.removed_at.or(Some(at));
        g
    }

    /// The failing revoke was replaced by a new grant of the entitlement.
    pub fn revoke_superseded(&self) -> Grant {
        let mut g = self.next();
        g.revoke_failing = None;
        g
    }

    /// The downstream entitlement an agent of `configuration` can check,
    /// when this federated grant awaits its confirmation there: in effect
    /// (active, applied, not yet confirmed) or gone (removed in the
    /// directory, not yet confirmed). Only the configuration where the
    /// resource is used (the chain's start) confirms.
    pub fn awaiting_check(&self, configuration: &ConfigId) -> Option<&Entitlement> {
        if !self.is_federated() || self.chain.first() != Some(configuration) {
            return None;
        }
        if !(self.awaits_effect() || self.awaits_removal_confirmation()) {
            return None;
        }
        self.confirm.iter().find(|e| &e.configuration == configuration)
    }

    /// Records a downstream answer: held while awaiting effect sets
    /// `effective_at`; absent after removal sets `removal_confirmed_at`.
    /// `None` when it changes nothing.
    pub fn record_check(&self, held: bool, at: DateTime<Utc>) -> Option<Grant> {
        let mut g = self.next();
        if held && self.awaits_effect() {
            g.effective_at = Some(at);
        } else if !held && self.awaits_removal_confirmation() {
            g.removal_confirmed_at = Some(at);
        } else {
            return None;
        }
        Some(g)
    }

    /// Active and applied, not yet known in effect.
    fn awaits_effect(&self) -> bool {
        self.state == GrantState::Active && self.applied_at.is_some() && self.effective_at.is_none()
    }

    /// Removed where it was applied, not yet known gone downstream.
    fn awaits_removal_confirmation(&self) -> bool {
        self.removed_at.is_some() && self.removal_confirmed_at.is_none()
    }

    /// Applied in another tenant than the one the resource is used in.
    pub fn is_federated(&self) -> bool {
        self.chain.len() > 1
    }

    pub fn view(&self) -> GrantView {
        GrantView {
            id: self.id,
            request: self.request,
            user: self.user.clone(),
            resource: self.resource.clone(),
            entitlement: self.entitlement.clone(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            state: self.state,
            end_reason: self.end_reason,
            ended_at: self.ended_at,
            ended_by: self.ended_by.clone(),
            extensions: self.extensions,
            break_glass: self.break_glass,
            applied_at: self.applied_at,
            effective_at: self.effective_at,
            removal_confirmed_at: self.removal_confirmed_at,
            chain: if self.is_federated() {
                self.chain.clone()
            } else {
                Vec::new()
            },
            removed_at: self.removed_at,
            delivery_error: self.delivery_error.clone(),
            revoke_failing: self.revoke_failing.clone(),
        }
    }
}
