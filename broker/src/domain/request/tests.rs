use std::time::Duration;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{CreateRequestBody, Decision, RequestKind, RequestState};
use jitgate_shared::v1::{RequestId, ResourceId, UserId};

use super::*;
use crate::domain::policy::Workflow;

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn body() -> CreateRequestBody {
    CreateRequestBody {
        resource: ResourceId::new("aws-prod-admin").unwrap(),
        duration_seconds: Some(600),
        justification: Some("incident 42".into()),
        ticket: None,
        starts_at: None,
        break_glass: false,
    }
}

fn workflow(n: u32) -> Workflow {
    Workflow {
        approvals_required: n,
        pending_ttl: Duration::from_secs(3600),
        ..Workflow::builtin()
    }
}

fn account(id: &str, email: Option<&str>, person: &str) -> User {
    User {
        id: uid(id),
        version: 0,
        display_name: id.into(),
        email: email.map(str::to_owned),
        email_verified: true,
        roles: Default::default(),
        groups: Default::default(),
        person: person.into(),
        disabled: false,
        created_at: t(0),
        provisioned_by: None,
        identities: Default::default(),
        language: None,
    }
}

fn pending(n: u32) -> Request {
    let alice = account("alice", Some("Alice@Example.org"), "alice");
    let b = body();
    let w = workflow(n);
    NewRequest {
        id: RequestId::generate(),
        kind: RequestKind::Access,
        requester: &alice,
        body: &b,
        workflow: &w,
        permitted: true,
        on_call: false,
        now: t(0),
    }
    .build()
    .unwrap()
}

fn keys(person: &str, email: Option<&str>) -> PersonKeys {
    PersonKeys {
        person: person.into(),
        email: email.map(crate::domain::user::normalise_email),
    }
}

fn approver(id: &UserId) -> Reviewer<'_> {
    Reviewer {
        id,
        keys: keys(id.as_str(), None),
        may_approve: true,
    }
}

#[test]
fn two_of_m_approvals_approve() {
    let r = pending(2);
    let (bob, carol) = (uid("bob"), uid("carol"));
    let (r, o) = r
        .review(&approver(&bob), &PersonsNow::new(), Decision::Approve, None, t(1))
        .unwrap();
    assert_eq!(
        o,
        ReviewOutcome::StillPending {
            approvals: 1,
            required: 2
        }
    );
    assert_eq!(r.state, RequestState::Pending);
    let err = r
        .review(&approver(&bob), &PersonsNow::new(), Decision::Approve, None, t(2))
        .unwrap_err();
    assert_eq!(
        err,
        RequestError::AlreadyReviewed {
            reviewer: bob.clone()
        }
    );
    let (r, o) = r
        .review(
            &approver(&carol),
            &PersonsNow::new(),
            Decision::Approve,
            None,
            t(3),
        )
        .unwrap();
    assert_eq!(o, ReviewOutcome::Approved);
    assert_eq!(r.state, RequestState::Approved);
}

#[test]
fn any_deny_ends_it() {
    let r = pending(2);
    let (bob, carol) = (uid("bob"), uid("carol"));
    let (r, _) = r
        .review(&approver(&bob), &PersonsNow::new(), Decision::Approve, None, t(1))
        .unwrap();
    let (r, o) = r
        .review(
            &approver(&carol),
            &PersonsNow::new(),
            Decision::Deny,
            Some("no".into()),
            t(2),
        )
        .unwrap();
    assert_eq!(o, ReviewOutcome::Denied);
    assert_eq!(r.state, RequestState::Denied);
    assert!(matches!(
        r.review(
            &approver(&uid("dave")),
            &PersonsNow::new(),
            Decision::Approve,
            None,
            t(3)
        ),
        Err(RequestError::NotPending {
            state: RequestState::Denied
        })
    ));
}

#[test]
fn no_self_approval_even_through_a_linked_account() {
    let r = pending(1);
    let alice = uid("alice");
    assert_eq!(
        r.review(
            &approver(&alice),
            &PersonsNow::new(),
            Decision::Approve,
            None,
            t(1)
        )
        .unwrap_err(),
        RequestError::SelfReview
    );
    let alt = uid("alice-admin");
    let linked = Reviewer {
        id: &alt,
        keys: keys("alice", None),
        may_approve: true,
    };
    assert_eq!(
        r.review(&linked, &PersonsNow::new(), Decision::Approve, None, t(1))
            .unwrap_err(),
        RequestError::SamePersonAsRequester {
            requester: alice.clone()
        }
    );
    // Another account with the same verified email, in another case.
    let same_email = Reviewer {
        id: &alt,
        keys: keys("alice-sso", Some("alice@example.ORG")),
        may_approve: true,
    };
    assert_eq!(
        r.review(&same_email, &PersonsNow::new(), Decision::Approve, None, t(1))
            .unwrap_err(),
        RequestError::SamePersonAsRequester {
            requester: alice.clone()
        }
    );
    // Linked to the requester after the request was made.
    let later = uid("alice-later");
    let now_keys: PersonsNow = [(alice.clone(), keys("alice", None))].into();
    let reviewer = Reviewer {
        id: &later,
        keys: keys("alice", None),
        may_approve: true,
    };
    let mut relinked = r.clone();
    relinked.requester_person = "someone-else".into();
    relinked.requester_email = None;
    assert!(matches!(
        relinked.review(&reviewer, &now_keys, Decision::Approve, None, t(1)),
        Err(RequestError::SamePersonAsRequester { .. })
    ));
    let stranger = uid("mallory");
    let not_approver = Reviewer {
        id: &stranger,
        keys: keys("mallory", None),
        may_approve: false,
    };
    assert_eq!(
        r.review(&not_approver, &PersonsNow::new(), Decision::Approve, None, t(1))
            .unwrap_err(),
        RequestError::NotAnApprover
    );
}

#[test]
fn approvals_after_the_pending_ttl_are_refused() {
    let r = pending(1);
    let bob = uid("bob");
    let late = r.pending_expires_at;
    assert!(matches!(
        r.review(&approver(&bob), &PersonsNow::new(), Decision::Approve, None, late),
        Err(RequestError::PendingExpired { .. })
    ));
    assert!(r.expire_pending(late - chrono::Duration::seconds(1)).is_none());
    let expired = r.expire_pending(late).unwrap();
    assert_eq!(expired.state, RequestState::PendingExpired);
}

#[test]
fn creation_checks_workflow_settings() {
    let alice = account("alice", None, "alice");
    let mut w = workflow(1);
    w.justification_required = true;
    w.ticket_pattern = Some(regex::Regex::new("^(?:[A-Z]+-[0-9]+)$").unwrap());
    w.max_duration = Duration::from_secs(900);
    w.default_duration = Duration::from_secs(600);
    let build = |b: &CreateRequestBody, w: &Workflow, permitted: bool| {
        NewRequest {
            id: RequestId::generate(),
            kind: RequestKind::Access,
            requester: &alice,
            body: b,
            workflow: w,
            permitted,
            on_call: false,
            now: t(0),
        }
        .build()
    };
    let mut b = body();
    b.ticket = Some("OPS-1".into());
    assert!(build(&b, &w, true).is_ok());
    assert_eq!(build(&b, &w, false).unwrap_err(), RequestError::NotPermitted);
    b.duration_seconds = Some(901);
    assert_eq!(
        build(&b, &w, true).unwrap_err(),
        RequestError::TooLong { asked: 901, max: 900 }
    );
    b.duration_seconds = Some(0);
    assert_eq!(build(&b, &w, true).unwrap_err(), RequestError::ZeroDuration);
    b.duration_seconds = None;
    assert_eq!(
        build(&b, &w, true).unwrap().duration_seconds,
        w.default_duration.as_secs()
    );
    b.justification = Some("   ".into());
    assert_eq!(
        build(&b, &w, true).unwrap_err(),
        RequestError::JustificationRequired
    );
    b.justification = Some("why".into());
    b.ticket = Some("ops 1".into());
    let err = build(&b, &w, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ticket `ops 1` does not match the pattern `[A-Z]+-[0-9]+`"
    );
    b.ticket = None;
    assert!(matches!(
        build(&b, &w, true),
        Err(RequestError::TicketRequired { .. })
    ));
    b.ticket = Some("OPS-1".into());
    b.starts_at = Some(t(-3600));
    assert!(matches!(
        build(&b, &w, true),
        Err(RequestError::StartsInPast { .. })
    ));
    b.starts_at = None;
    b.break_glass = true;
    assert_eq!(
        build(&b, &w, true).unwrap_err(),
        RequestError::BreakGlassNotAllowed
    );
    w.break_glass_allowed = true;
    let r = build(&b, &w, true).unwrap();
    assert_eq!(r.state, RequestState::Approved);
    assert_eq!(r.approvals_required, 0);
}

#[test]
fn cancel_by_requester_or_admin_only() {
    let r = pending(1);
    assert_eq!(r.cancel(&uid("bob"), false).unwrap_err(), RequestError::NotYours);
    assert_eq!(
        r.cancel(&uid("bob"), true).unwrap().state,
        RequestState::Cancelled
    );
    let c = r.cancel(&uid("alice"), false).unwrap();
    assert_eq!(c.state, RequestState::Cancelled);
    assert!(matches!(
        c.cancel(&uid("alice"), false),
        Err(RequestError::CannotCancel { .. })
    ));
}

mod state_machine {
    //! Random interleavings of approve, deny, cancel, expire and end never
    //! reach an invalid state: terminal states stay terminal, and approval needs N distinct non-requester approvals.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Review { who: u8, approve: bool, at: i64 },
        Cancel { by_requester: bool },
        ExpirePending { at: i64 },
        Activate,
        End,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..5, any::<bool>(), 0i64..5000).prop_map(|(who, approve, at)| Op::Review { who, approve, at }),
            1 => any::<bool>().prop_map(|by_requester| Op::Cancel { by_requester }),
            1 => (0i64..5000).prop_map(|at| Op::ExpirePending { at }),
            1 => Just(Op::Activate),
            1 => Just(Op::End),
        ]
    }

    proptest! {
        #[test]
        fn never_invalid(n in 1u32..4, ops in proptest::collection::vec(op(), 0..30)) {
            let names = ["alice", "bob", "carol", "dave", "erin"];
            let ids: Vec<UserId> = names.iter().map(|n| uid(n)).collect();
            let mut r = pending(n);
            for op in ops {
                let before = r.clone();
                let result: Option<Request> = match op {
                    Op::Review { who, approve, at } => {
                        let id = &ids[usize::from(who)];
                        let d = if approve { Decision::Approve } else { Decision::Deny };
                        r.review(&approver(id), &PersonsNow::new(), d, None, t(at)).ok().map(|(r, _)| r)
                    }
                    Op::Cancel { by_requester } => {
                        let by = if by_requester { &ids[0] } else { &ids[1] };
                        r.cancel(by, false).ok()
                    }
                    Op::ExpirePending { at } => r.expire_pending(t(at)),
                    Op::Activate => (r.state == RequestState::Approved).then(|| r.activated()),
                    Op::End => (r.state == RequestState::Active).then(|| r.ended(jitgate_shared::v1::api::EndReason::Expired)),
                };
                if let Some(next) = result {
                    prop_assert!(!before.state.is_terminal(), "left terminal state {:?}", before.state);
                    r = next;
                }
                // invariants
                prop_assert!(r.reviews.iter().all(|rv| rv.reviewer != ids[0]), "self review recorded");
                let mut reviewers: Vec<_> = r.reviews.iter().map(|rv| rv.reviewer.clone()).collect();
                reviewers.sort();
                reviewers.dedup();
                prop_assert_eq!(reviewers.len(), r.reviews.len(), "duplicate reviewer");
                let denies = r.reviews.iter().filter(|rv| rv.decision == Decision::Deny).count();
                prop_assert!(denies <= 1);
                if denies == 1 {
                    prop_assert_eq!(r.state, RequestState::Denied);
                }
                if matches!(r.state, RequestState::Approved | RequestState::Active | RequestState::Ended) {
                    prop_assert!(r.approvals() >= n, "approved with {} of {}", r.approvals(), n);
                }
                if r.state == RequestState::Pending {
                    prop_assert!(r.approvals() < n);
                }
            }
        }
    }
}

#[test]
fn one_person_counts_once_whatever_the_account() {
    let r = pending(2);
    let (bob, bob_sso, bob_alt, carol) = (uid("bob"), uid("bob-sso"), uid("bob-alt"), uid("carol"));
    let bob_keys = keys("bob", Some("bob@example.org"));
    let as_bob = Reviewer {
        id: &bob,
        keys: bob_keys.clone(),
        may_approve: true,
    };
    let (r, _) = r
        .review(&as_bob, &PersonsNow::new(), Decision::Approve, None, t(1))
        .unwrap();
    assert_eq!(
        r.reviews[0].reviewer_keys, bob_keys,
        "the review records the person"
    );
    // The same verified email through another account.
    let sso = Reviewer {
        id: &bob_sso,
        keys: keys("bob-sso", Some("BOB@example.org")),
        may_approve: true,
    };
    assert_eq!(
        r.review(&sso, &PersonsNow::new(), Decision::Approve, None, t(2))
            .unwrap_err(),
        RequestError::AlreadyReviewedAs { account: bob.clone() }
    );
    // An account linked to bob by an admin.
    let linked = Reviewer {
        id: &bob_alt,
        keys: keys("bob", None),
        may_approve: true,
    };
    assert!(matches!(
        r.review(&linked, &PersonsNow::new(), Decision::Approve, None, t(2)),
        Err(RequestError::AlreadyReviewedAs { .. })
    ));
    // bob's account linked to bob-alt's person only after bob approved.
    let unlinked_then = Reviewer {
        id: &bob_alt,
        keys: keys("robert", None),
        may_approve: true,
    };
    let now_keys: PersonsNow = [(bob.clone(), keys("robert", None))].into();
    assert!(matches!(
        r.review(&unlinked_then, &now_keys, Decision::Approve, None, t(2)),
        Err(RequestError::AlreadyReviewedAs { .. })
    ));
    let (r, o) = r
        .review(
            &approver(&carol),
            &PersonsNow::new(),
            Decision::Approve,
            None,
            t(3),
        )
        .unwrap();
    assert_eq!(o, ReviewOutcome::Approved);
    assert_eq!(r.state, RequestState::Approved);
}

#[test]
fn an_approval_by_an_account_since_linked_to_the_requester_does_not_count() {
    let r = pending(2);
    let (mole, carol, dave) = (uid("mole"), uid("carol"), uid("dave"));
    let (r, _) = r
        .review(
            &approver(&mole),
            &PersonsNow::new(),
            Decision::Approve,
            None,
            t(1),
        )
        .unwrap();
    // An admin links `mole` to alice; carol's approval is then the only one.
    let now_keys: PersonsNow = [
        (uid("alice"), keys("alice", None)),
        (mole.clone(), keys("alice", None)),
    ]
    .into();
    let (r, o) = r
        .review(&approver(&carol), &now_keys, Decision::Approve, None, t(2))
        .unwrap();
    assert_eq!(
        o,
        ReviewOutcome::StillPending {
            approvals: 1,
            required: 2
        }
    );
    let (_, o) = r
        .review(&approver(&dave), &now_keys, Decision::Approve, None, t(3))
        .unwrap();
    assert_eq!(o, ReviewOutcome::Approved);
}

#[test]
fn the_principal_is_fixed_when_the_request_is_made() {
    let r = pending(1);
    assert_eq!(r.principal, "alice@example.org", "the verified email, normalised");
    let mut unverified = account("zed", Some("zed@example.org"), "zed");
    unverified.email_verified = false;
    assert_eq!(unverified.principal(), "zed", "an unverified email names nobody");
}
