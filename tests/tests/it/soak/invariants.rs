//! What the soak checks, as pure functions over what the sandbox tenants
//! went through (their change logs), the grants and the requests the broker
//! recorded. A finding is a sentence naming what broke; the soak fails on
//! any.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use jitgate_shared::v1::api::{Decision, GrantView, RequestState, RequestView};
use jitgate_tests::agent::TenantChange;

/// How long past its grant's end an entitlement may still be held (issue
/// 21: "nothing held in a tenant without an active grant past its end plus
/// 5 s").
pub const SLACK: TimeDelta = TimeDelta::seconds(5);

/// What one tenant's history says, checked against the grants.
#[derive(Debug, Default)]
pub struct TenantReport {
    /// Times an entitlement was put in place.
    pub applies: usize,
    /// For each removal: how long after the end of the grants that
    /// allowed it (0 when before).
    pub lateness: Vec<TimeDelta>,
    /// Entitlements held at `now`.
    pub held: usize,
    pub findings: Vec<String>,
}

/// The key a tenant change log names an entitlement by (principal and
/// target as JSON), for a grant.
pub fn entitlement_key(grant: &GrantView) -> String {
    format!(
        "{} {}",
        serde_json::to_value(&grant.entitlement.principal).unwrap(),
        serde_json::to_value(&grant.entitlement.target).unwrap()
    )
}

/// A span of time, from its start to its end.
type Span = (DateTime<Utc>, DateTime<Utc>);

/// An entitlement held from a moment until another (`None`: still held).
type Held<'a> = (&'a str, DateTime<Utc>, Option<DateTime<Utc>>);

/// When the grant stopped allowing its entitlement: its window's end, or
/// earlier when it was ended early (revoked, deprovisioned).
fn end_of(grant: &GrantView) -> DateTime<Utc> {
    grant.ended_at.map_or(grant.ends_at, |e| e.min(grant.ends_at))
}

/// Per entitlement, the spans in which some grant allowed it, merged where
/// one begins before the previous one's end plus [`SLACK`] (the
/// entitlement may rightly stay in place across them).
fn allowed(grants: &[GrantView]) -> HashMap<String, Vec<Span>> {
    let mut spans: HashMap<String, Vec<Span>> = HashMap::new();
    for g in grants {
        spans
            .entry(entitlement_key(g))
            .or_default()
            .push((g.starts_at, end_of(g)));
    }
    for list in spans.values_mut() {
        list.sort();
        let mut merged: Vec<Span> = Vec::with_capacity(list.len());
        for &(start, end) in list.iter() {
            match merged.last_mut() {
                Some(last) if start <= last.1 + SLACK => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        *list = merged;
    }
    spans
}

/// Checks one tenant's change log (in order) against every grant the broker
/// knows, at `now` (when the log was read; the grants were read after it):
/// each entitlement applied only while not held, held only within a span
/// some grant allowed, and gone by that span's end plus [`SLACK`].
pub fn check_tenant(changes: &[TenantChange], grants: &[GrantView], now: DateTime<Utc>) -> TenantReport {
    let allowed = allowed(grants);
    let mut report = TenantReport::default();
    // Entitlement → since when it is held.
    let mut open: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    let mut holdings: Vec<Held> = Vec::new();
    for c in changes {
        match c.op.as_str() {
            "apply" => {
                report.applies += 1;
                if let Some(since) = open.insert(&c.entitlement, c.at) {
                    report.findings.push(format!(
                        "{} applied again at {} while held since {since}",
                        c.entitlement, c.at
                    ));
                }
            }
            "remove" => match open.remove(c.entitlement.as_str()) {
                Some(since) => holdings.push((&c.entitlement, since, Some(c.at))),
                None => report
                    .findings
                    .push(format!("{} removed at {} while not held", c.entitlement, c.at)),
            },
            other => report
                .findings
                .push(format!("unknown change `{other}` of {}", c.entitlement)),
        }
    }
    report.held = open.len();
    holdings.extend(open.into_iter().map(|(e, since)| (e, since, None)));

    for (entitlement, from, to) in holdings {
        let until = to.unwrap_or(now);
        let span = allowed.get(entitlement).and_then(|spans| {
            spans
                .iter()
                .find(|(start, end)| *start <= from && from <= *end + SLACK)
        });
        let Some(&(start, end)) = span else {
            report.findings.push(format!(
                "{entitlement} applied at {from} without a grant allowing it"
            ));
            continue;
        };
        if until > end + SLACK {
            let what = if to.is_some() {
                "removed at"
            } else {
                "still held at"
            };
            report.findings.push(format!(
                "{entitlement} {what} {until}: its grants (from {start}) ended at {end}, {} ms before",
                (until - end).num_milliseconds()
            ));
        }
        if to.is_some() {
            report.lateness.push((until - end).max(TimeDelta::zero()));
        }
    }
    report
}

/// What the requests say about approvals.
#[derive(Debug, Default)]
pub struct ApprovalReport {
    /// Requests granted after approvals by people.
    pub approved: usize,
    /// Of those, needing two or more.
    pub approved_by_several: usize,
    pub findings: Vec<String>,
}

/// Every request: no approval by the requester's own person (through any
/// account), no person counted twice, and every granted request that needed
/// approvals had that many distinct people approve it.
pub fn check_approvals(requests: &[RequestView], person_of: &HashMap<String, String>) -> ApprovalReport {
    let mut report = ApprovalReport::default();
    let person = |user: &str| person_of.get(user).map_or(user, String::as_str).to_owned();
    for r in requests {
        let requester = person(r.requester.as_str());
        let mut approvers = HashSet::new();
        for review in r.reviews.iter().filter(|v| v.decision == Decision::Approve) {
            let who = person(review.reviewer.as_str());
            if who != review.person {
                report.findings.push(format!(
                    "request {}: {} approved as person `{}` but is `{who}`",
                    r.id, review.reviewer, review.person
                ));
            }
            if who == requester {
                report.findings.push(format!(
                    "request {}: approved by {} for their own person `{requester}`",
                    r.id, review.reviewer
                ));
            }
            if !approvers.insert(who.clone()) {
                report
                    .findings
                    .push(format!("request {}: person `{who}` counted twice", r.id));
            }
        }
        let granted = matches!(
            r.state,
            RequestState::Approved | RequestState::Active | RequestState::Ended
        );
        if granted && r.approvals_required > 0 && !r.break_glass {
            report.approved += 1;
            if r.approvals_required > 1 {
                report.approved_by_several += 1;
            }
            if approvers.len() < r.approvals_required as usize {
                report.findings.push(format!(
                    "request {} granted with {} of {} approvals",
                    r.id,
                    approvers.len(),
                    r.approvals_required
                ));
            }
        }
    }
    report
}

/// The `q`-quantile of some durations (0 when there are none).
pub fn quantile(of: &[TimeDelta], q: f64) -> TimeDelta {
    let mut sorted = of.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => TimeDelta::zero(),
        n => sorted[((n as f64 * q).ceil() as usize).clamp(1, n) - 1],
    }
}

#[cfg(test)]
mod tests {
    //! The checks find what they are for: each is shown a history that
    //! breaks it, and one that does not.

    use super::*;
    use jitgate_shared::v1::api::{GrantState, ReviewView};
    use jitgate_shared::v1::Entitlement;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn entitlement(who: &str) -> Entitlement {
        serde_json::from_value(serde_json::json!({
            "configuration": "aws-test",
            "principal": who,
            "target": {"kind": "aws_account_assignment", "account_id": "111122223333", "permission_set": "Admin"}
        }))
        .unwrap()
    }

    fn grant(who: &str, from: i64, to: i64, ended: Option<i64>) -> GrantView {
        serde_json::from_value(serde_json::json!({
            "id": uuid(), "request": uuid(), "user": "alice", "resource": "dev-admin",
            "entitlement": entitlement(who), "starts_at": at(from), "ends_at": at(to),
            "state": if ended.is_some() { GrantState::Ended } else { GrantState::Active },
            "ended_at": ended.map(at), "extensions": 0, "break_glass": false,
        }))
        .unwrap()
    }

    fn uuid() -> String {
        format!("00000000-0000-4000-8000-{:012x}", rand::random::<u32>())
    }

    fn change(op: &str, who: &str, s: i64) -> TenantChange {
        let e = entitlement(who);
        let key = format!(
            "{} {}",
            serde_json::to_value(&e.principal).unwrap(),
            serde_json::to_value(&e.target).unwrap()
        );
        TenantChange {
            op: op.into(),
            entitlement: key,
            at: at(s),
        }
    }

    #[test]
    fn the_key_is_the_one_the_tenant_log_uses() {
        let g = grant("alice", 0, 10, None);
        assert_eq!(entitlement_key(&g), change("apply", "alice", 0).entitlement);
    }

    #[test]
    fn a_removal_within_the_slack_passes_and_one_after_it_is_found() {
        let grants = [grant("alice", 0, 10, None)];
        let on_time = check_tenant(
            &[change("apply", "alice", 1), change("remove", "alice", 14)],
            &grants,
            at(20),
        );
        assert!(on_time.findings.is_empty(), "{:?}", on_time.findings);
        assert_eq!(on_time.lateness, [TimeDelta::seconds(4)]);
        let late = check_tenant(
            &[change("apply", "alice", 1), change("remove", "alice", 16)],
            &grants,
            at(20),
        );
        assert_eq!(late.findings.len(), 1, "{:?}", late.findings);
    }

    #[test]
    fn an_early_end_counts_from_when_the_grant_was_ended() {
        let grants = [grant("alice", 0, 100, Some(10))];
        let kept = check_tenant(&[change("apply", "alice", 1)], &grants, at(16));
        assert_eq!(kept.held, 1);
        assert_eq!(kept.findings.len(), 1, "still held 6 s after the revoke");
        let gone = check_tenant(&[change("apply", "alice", 1)], &grants, at(14));
        assert!(gone.findings.is_empty(), "{:?}", gone.findings);
    }

    #[test]
    fn overlapping_grants_keep_one_holding_and_a_gap_ends_it() {
        let changes = [change("apply", "alice", 1), change("remove", "alice", 31)];
        let chained = [grant("alice", 0, 10, None), grant("alice", 12, 30, None)];
        assert!(check_tenant(&changes, &chained, at(40)).findings.is_empty());
        let gap = [grant("alice", 0, 10, None), grant("alice", 20, 30, None)];
        assert_eq!(check_tenant(&changes, &gap, at(40)).findings.len(), 1);
    }

    #[test]
    fn an_apply_without_a_grant_or_twice_is_found() {
        let none = check_tenant(
            &[change("apply", "bob", 1)],
            &[grant("alice", 0, 10, None)],
            at(2),
        );
        assert_eq!(none.findings.len(), 1, "{:?}", none.findings);
        let twice = check_tenant(
            &[change("apply", "alice", 1), change("apply", "alice", 2)],
            &[grant("alice", 0, 10, None)],
            at(3),
        );
        assert!(twice.findings.iter().any(|f| f.contains("applied again")));
    }

    fn request(
        requester: &str,
        required: u32,
        state: RequestState,
        approvers: &[(&str, &str)],
    ) -> RequestView {
        let reviews: Vec<ReviewView> = approvers
            .iter()
            .map(|(reviewer, person)| ReviewView {
                reviewer: reviewer.parse().unwrap(),
                person: (*person).to_owned(),
                decision: Decision::Approve,
                comment: None,
                at: at(1),
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "id": uuid(), "kind": {"kind": "access"}, "requester": requester, "resource": "prod-admin",
            "duration_seconds": 60, "state": state, "created_at": at(0), "pending_expires_at": at(60),
            "approvals_required": required, "reviews": reviews, "break_glass": false,
        }))
        .unwrap()
    }

    #[test]
    fn self_approval_double_counting_and_too_few_approvals_are_found() {
        let persons: HashMap<String, String> = [
            ("erin", "alice"),
            ("alice", "alice"),
            ("bob", "bob"),
            ("carol", "carol"),
        ]
        .map(|(u, p)| (u.to_owned(), p.to_owned()))
        .into();
        let fine = request(
            "alice",
            2,
            RequestState::Active,
            &[("bob", "bob"), ("carol", "carol")],
        );
        let own = request("alice", 1, RequestState::Active, &[("erin", "alice")]);
        let twice = request(
            "alice",
            2,
            RequestState::Active,
            &[("bob", "bob"), ("bob", "bob")],
        );
        let short = request("alice", 2, RequestState::Ended, &[("bob", "bob")]);
        let report = check_approvals(&[fine], &persons);
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!((report.approved, report.approved_by_several), (1, 1));
        for (bad, what) in [(own, "own person"), (twice, "counted twice"), (short, "1 of 2")] {
            let report = check_approvals(&[bad], &persons);
            assert!(
                report.findings.iter().any(|f| f.contains(what)),
                "{what}: {:?}",
                report.findings
            );
        }
    }

    #[test]
    fn quantiles_pick_from_the_sorted_values() {
        let ms = |v: i64| TimeDelta::milliseconds(v);
        let values: Vec<_> = (1..=100).rev().map(ms).collect();
        assert_eq!(quantile(&values, 0.99), ms(99));
        assert_eq!(quantile(&values, 1.0), ms(100));
        assert_eq!(quantile(&[], 0.5), ms(0));
    }
}
