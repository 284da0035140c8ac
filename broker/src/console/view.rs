//! Records shaped into what pages show: plain strings and flags, in the
//! viewer's language, so templates only display. Pure: time is passed in.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{Decision, GrantState, GrantView, RequestState, RequestView};

use super::text::{Lang, Texts};

/// An instant as people read it (UTC, to the minute).
pub fn at_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An instant for `<time datetime>` and the script's countdowns.
pub fn at_iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A federated chain as people read it: `aws-fed → entra` (empty for none).
pub fn chain_text(chain: &[jitgate_shared::v1::ConfigId]) -> String {
    chain.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(" → ")
}

/// Time left until `end`, as a countdown's first frame ("12:05", "1:02:03").
pub fn countdown(end: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let left = (end - now).num_seconds().max(0);
    let (h, m, s) = (left / 3600, left % 3600 / 60, left % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A grant in a list.
#[derive(Debug, Clone)]
pub struct GrantRow {
    pub id: String,
    pub request: String,
    pub resource: String,
    pub scheduled: bool,
    pub ended: bool,
    pub starts_at: String,
    pub ends_at_iso: String,
    pub time_left: String,
    /// Applied, in effect, or on its way.
    pub progress: &'static str,
    pub break_glass: bool,
    pub delivery_error: Option<String>,
    pub revoke_failing: bool,
    /// How much longer it may be made, as choices (empty: it may not be
    /// extended, or not by its viewer); see [`extend_choices`].
    pub extend_choices: Vec<(u64, String, bool)>,
}

pub fn grant_row(t: &Texts, g: &GrantView, now: DateTime<Utc>) -> GrantRow {
    let progress = if g.state == GrantState::Ended {
        t.state_ended
    } else if g.state == GrantState::Scheduled {
        t.grant_scheduled
    } else if g.effective_at.is_some() {
        t.grant_effective
    } else if g.applied_at.is_some() {
        t.grant_applied
    } else {
        t.grant_applying
    };
    GrantRow {
        id: g.id.to_string(),
        request: g.request.to_string(),
        resource: g.resource.to_string(),
        scheduled: g.state == GrantState::Scheduled,
        ended: g.state == GrantState::Ended,
        starts_at: at_text(g.starts_at),
        ends_at_iso: at_iso(g.ends_at),
        time_left: countdown(g.ends_at, now),
        progress,
        break_glass: g.break_glass,
        delivery_error: g.delivery_error.clone(),
        revoke_failing: g.revoke_failing.is_some(),
        extend_choices: Vec::new(),
    }
}

/// What to offer for extending a grant that may still grow by `room`
/// seconds (none: not extendable): lengths up to the room, 30 minutes
/// chosen when it fits.
pub fn extend_choices(lang: Lang, room: Option<u64>) -> Vec<(u64, String, bool)> {
    room.map(|r| duration_choices(lang, 30 * 60, r, None))
        .unwrap_or_default()
}

/// A request in a list.
#[derive(Debug, Clone)]
pub struct RequestRow {
    pub id: String,
    pub resource: String,
    pub requested: String,
    pub duration: String,
    pub state: &'static str,
    pub approvals: String,
    pub pending: bool,
    pub break_glass: bool,
    /// Asks to extend a running grant, not for new access.
    pub extension: bool,
}

pub fn request_row(lang: Lang, r: &RequestView) -> RequestRow {
    let t = lang.texts();
    let approvals = r
        .reviews
        .iter()
        .filter(|v| v.decision == Decision::Approve)
        .count();
    let state = match (&r.state, &r.end_reason) {
        (RequestState::Ended, Some(reason)) => t.end_reason(reason),
        (state, _) => t.request_state(state),
    };
    RequestRow {
        id: r.id.to_string(),
        resource: r.resource.to_string(),
        requested: at_text(r.created_at),
        duration: lang.duration(r.duration_seconds),
        state,
        approvals: format!("{approvals} / {}", r.approvals_required),
        pending: r.state == RequestState::Pending,
        break_glass: r.break_glass,
        extension: matches!(r.kind, jitgate_shared::v1::api::RequestKind::Extension { .. }),
    }
}

/// One line of a request's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    pub at: DateTime<Utc>,
    pub at_iso: String,
    pub at_text: String,
    pub what: &'static str,
    pub detail: String,
    /// `ok`, `bad` or empty: how the line is marked.
    pub tone: &'static str,
}

/// What happened to a request and its grant, in order: created, each
/// review, granted, applied, in effect, ended, removed, and the last
/// delivery error.
pub fn timeline(t: &Texts, r: &RequestView, g: Option<&GrantView>, now: DateTime<Utc>) -> Vec<Moment> {
    let moment = |at: DateTime<Utc>, what: &'static str, detail: String, tone: &'static str| Moment {
        at,
        at_iso: at_iso(at),
        at_text: at_text(at),
        what,
        detail,
        tone,
    };
    let mut out = vec![moment(r.created_at, t.ev_created, r.requester.to_string(), "")];
    for review in &r.reviews {
        let (what, tone) = match review.decision {
            Decision::Approve => (t.ev_approved_by, "ok"),
            Decision::Deny => (t.ev_denied_by, "bad"),
        };
        let detail = match &review.comment {
            Some(c) => format!("{} — {c}", review.reviewer),
            None => review.reviewer.to_string(),
        };
        out.push(moment(review.at, what, detail, tone));
    }
    if let Some(g) = g {
        let what = format!(
            "{}: {}",
            g.entitlement.configuration,
            g.entitlement.target.describe()
        );
        out.push(moment(g.starts_at, t.ev_granted, what, "ok"));
        if let Some(at) = g.applied_at {
            out.push(moment(at, t.ev_applied, String::new(), "ok"));
        }
        if let Some(at) = g.effective_at {
            out.push(moment(at, t.ev_effective, String::new(), "ok"));
        }
        match g.ended_at {
            Some(at) => {
                let reason = g.end_reason.as_ref().map(|r| t.end_reason(r)).unwrap_or_default();
                let by = g.ended_by.as_ref().map(|u| format!(" — {u}")).unwrap_or_default();
                out.push(moment(at, t.ev_ended, format!("{reason}{by}"), ""));
            }
            None if g.ends_at > now => out.push(moment(g.ends_at, t.ev_ends, String::new(), "")),
            None => {}
        }
        if let Some(at) = g.removed_at {
            out.push(moment(at, t.ev_removed, String::new(), "ok"));
        }
        if let Some(at) = g.removal_confirmed_at {
            out.push(moment(at, t.ev_removal_confirmed, String::new(), "ok"));
        }
        if let Some(f) = &g.revoke_failing {
            out.push(moment(f.since, t.revoke_failing, f.reason.clone(), "bad"));
        } else if let Some(e) = &g.delivery_error {
            out.push(moment(now.min(g.ends_at), t.ev_delivery_error, e.clone(), "bad"));
        }
    } else if r.state.is_terminal() {
        let closed = r.reviews.last().map_or(r.pending_expires_at, |v| v.at);
        let at = if r.state == RequestState::PendingExpired {
            r.pending_expires_at
        } else {
            closed
        };
        if r.state != RequestState::Denied {
            out.push(moment(at, t.ev_closed, t.request_state(&r.state).to_owned(), ""));
        }
    }
    out.sort_by_key(|m| m.at);
    out
}

/// Durations to offer for a window: common lengths up to the longest the
/// workflow allows, and its default and longest. `(seconds, label,
/// selected)`.
pub fn duration_choices(lang: Lang, default: u64, max: u64, chosen: Option<u64>) -> Vec<(u64, String, bool)> {
    let mut secs: Vec<u64> = [15, 30, 60, 120, 240, 480, 1440]
        .iter()
        .map(|m| m * 60)
        .filter(|s| *s <= max)
        .chain([default.min(max), max])
        .filter(|s| *s > 0)
        .collect();
    secs.sort_unstable();
    secs.dedup();
    let chosen = chosen.filter(|c| secs.contains(c)).unwrap_or(default.min(max));
    secs.into_iter()
        .map(|s| (s, lang.duration(s), s == chosen))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use jitgate_shared::v1::api::{EndReason, ReviewView};
    use jitgate_shared::v1::{RequestId, ResourceId, UserId};

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .unwrap_or_default()
    }

    fn request(state: RequestState) -> RequestView {
        RequestView {
            id: RequestId::generate(),
            kind: jitgate_shared::v1::api::RequestKind::Access,
            requester: UserId::new("alice").unwrap(),
            principal: "alice@example.com".into(),
            resource: ResourceId::new("prod-admin").unwrap(),
            duration_seconds: 3600,
            justification: None,
            ticket: None,
            starts_at: None,
            state,
            end_reason: None,
            created_at: t(0),
            pending_expires_at: t(86_400),
            approvals_required: 2,
            reviews: vec![ReviewView {
                reviewer: UserId::new("bob").unwrap(),
                person: "bob".into(),
                decision: Decision::Approve,
                comment: Some("ok".into()),
                at: t(60),
            }],
            break_glass: false,
            grant: None,
        }
    }

    #[test]
    fn a_timeline_is_in_order_and_names_who_decided() {
        let mut r = request(RequestState::Denied);
        r.reviews.push(ReviewView {
            reviewer: UserId::new("carol").unwrap(),
            person: "carol".into(),
            decision: Decision::Deny,
            comment: None,
            at: t(30),
        });
        let moments = timeline(&super::super::text::EN, &r, None, t(100));
        let whats: Vec<&str> = moments.iter().map(|m| m.what).collect();
        assert_eq!(whats, ["Requested", "Denied by", "Approved by"]);
        assert_eq!(moments[2].detail, "bob — ok");
        assert_eq!(moments[1].tone, "bad");
    }

    #[test]
    fn a_cancelled_request_says_so_at_the_end() {
        let r = request(RequestState::Cancelled);
        let moments = timeline(&super::super::text::EN, &r, None, t(100));
        assert_eq!(moments.last().map(|m| m.detail.as_str()), Some("cancelled"));
    }

    #[test]
    fn ended_requests_show_why() {
        let mut r = request(RequestState::Ended);
        r.end_reason = Some(EndReason::Revoked);
        assert_eq!(request_row(Lang::En, &r).state, "ended early");
        assert_eq!(request_row(Lang::Ja, &r).approvals, "1 / 2");
    }

    #[test]
    fn an_extension_is_marked_as_one() {
        let mut r = request(RequestState::Pending);
        assert!(!request_row(Lang::En, &r).extension);
        r.kind = jitgate_shared::v1::api::RequestKind::Extension {
            grant: jitgate_shared::v1::GrantId::generate(),
        };
        assert!(request_row(Lang::En, &r).extension);
    }

    #[test]
    fn countdowns_never_go_below_zero() {
        assert_eq!(countdown(t(3725), t(0)), "1:02:05");
        assert_eq!(countdown(t(65), t(0)), "1:05");
        assert_eq!(countdown(t(0), t(10)), "0:00");
    }

    #[test]
    fn duration_choices_stay_within_the_longest() {
        let c = duration_choices(Lang::En, 3600, 7200, None);
        let secs: Vec<u64> = c.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(secs, [900, 1800, 3600, 7200]);
        assert!(c.iter().any(|(s, _, sel)| *s == 3600 && *sel));
        let odd = duration_choices(Lang::En, 2700, 2700, Some(99));
        assert_eq!(
            odd.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(),
            [900, 1800, 2700]
        );
        assert!(odd.iter().any(|(s, _, sel)| *s == 2700 && *sel));
    }
}
