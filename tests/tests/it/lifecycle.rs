//! The request lifecycle as a user sees it through the API.

use std::time::Duration;

use jitgate_shared::v1::api::{CommandOp, EndReason, ExtendBody, ExtendOutcome, GrantState, RequestState};
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use reqwest::StatusCode;

use crate::support::{eventually, outbox, past, request, status};

#[tokio::test]
async fn two_of_m_approvals_with_self_approval_refused() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let (alice, bob, carol, erin) = (
        b.client("alice"),
        b.client("bob"),
        b.client("carol"),
        b.client("erin"),
    );
    let r = request(&alice, "prod-admin", 600).await;
    assert_eq!(r.state, RequestState::Pending);
    assert_eq!(r.approvals_required, 2);

    // The requester, and a second account of the same person, may not approve.
    let (code, msg) = status(alice.approve(r.id, None).await);
    assert_eq!(code, StatusCode::FORBIDDEN, "{msg}");
    let (code, msg) = status(erin.approve(r.id, None).await);
    assert_eq!(code, StatusCode::FORBIDDEN, "{msg}");
    assert!(msg.contains("the same person as you"), "{msg}");
    // Not an approver at all.
    let (code, _) = status(b.client("admin").approve(r.id, None).await);
    assert_eq!(code, StatusCode::FORBIDDEN);

    let after_one = bob.approve(r.id, Some("ok".into())).await.unwrap();
    assert_eq!(after_one.state, RequestState::Pending);
    let (code, msg) = status(bob.approve(r.id, None).await);
    assert_eq!(code, StatusCode::CONFLICT, "{msg}");
    assert!(
        outbox(&b.client("admin")).await.is_empty(),
        "nothing is granted before N approvals"
    );

    let done = carol.approve(r.id, None).await.unwrap();
    assert_eq!(done.state, RequestState::Active);
    let grant = alice.grant(done.grant.unwrap()).await.unwrap();
    assert_eq!(grant.state, GrantState::Active);
    assert_eq!(grant.entitlement.principal, "alice@example.com");
    let cmds = outbox(&b.client("admin")).await;
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].op, CommandOp::Grant);
    assert_eq!(cmds[0].not_after, grant.ends_at);
}

#[tokio::test]
async fn any_deny_wins_and_ends_the_request() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let r = request(&b.client("alice"), "prod-admin", 600).await;
    b.client("bob").approve(r.id, None).await.unwrap();
    let denied = b
        .client("carol")
        .deny(r.id, Some("not now".into()))
        .await
        .unwrap();
    assert_eq!(denied.state, RequestState::Denied);
    let (code, _) = status(b.client("dave").approve(r.id, None).await);
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(denied.grant.is_none());
    assert!(outbox(&b.client("admin")).await.is_empty());
}

#[tokio::test]
async fn racing_approve_and_deny_have_exactly_one_outcome() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let (alice, bob, carol) = (b.client("alice"), b.client("bob"), b.client("carol"));
    for _ in 0..20 {
        let r = request(&alice, "dev-admin", 600).await;
        let (approve, deny) = tokio::join!(bob.approve(r.id, None), carol.deny(r.id, None));
        let final_state = alice.request(r.id).await.unwrap();
        match (approve.is_ok(), deny.is_ok()) {
            (true, false) => {
                assert_eq!(final_state.state, RequestState::Active);
                assert_eq!(deny.unwrap_err().status(), Some(StatusCode::CONFLICT));
            }
            (false, true) => {
                assert_eq!(final_state.state, RequestState::Denied);
                assert!(final_state.grant.is_none());
                assert_eq!(approve.unwrap_err().status(), Some(StatusCode::CONFLICT));
            }
            other => panic!("both or neither won: {other:?} {final_state:?}"),
        }
        assert_eq!(final_state.reviews.len(), 1, "the loser's review is not recorded");
    }
}

#[tokio::test]
async fn approvals_after_the_pending_ttl_are_refused() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let alice = b.client("alice");
    let r = request(&alice, "quick-admin", 600).await;
    past(r.pending_expires_at).await;
    let (code, msg) = status(b.client("bob").approve(r.id, None).await);
    assert_eq!(code, StatusCode::CONFLICT, "{msg}");
    let expired = eventually(Duration::from_secs(5), "pending expiry", || async {
        let r = alice.request(r.id).await.unwrap();
        (r.state == RequestState::PendingExpired).then_some(r)
    })
    .await;
    assert!(expired.grant.is_none());
}

#[tokio::test]
async fn overlapping_grants_share_the_entitlement_until_the_last_ends() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let (alice, admin) = (b.client("alice"), b.client("admin"));
    let first = request(&alice, "auto-admin", 2).await;
    let second = request(&alice, "auto-admin", 5).await;
    assert_eq!(first.state, RequestState::Active);
    assert_eq!(second.state, RequestState::Active);
    // Applied, then prolonged: the newer command (the later deadline)
    // supersedes the queued one.
    let cmds = outbox(&admin).await;
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert_eq!(cmds[0].op, CommandOp::Grant);
    assert_eq!(
        cmds[0].not_after,
        alice.grant(second.grant.unwrap()).await.unwrap().ends_at
    );
    let g1 = first.grant.unwrap();
    eventually(Duration::from_secs(6), "first grant to end", || async {
        (alice.grant(g1).await.unwrap().state == GrantState::Ended).then_some(())
    })
    .await;
    assert_eq!(
        alice.grant(g1).await.unwrap().end_reason,
        Some(EndReason::Expired)
    );
    assert!(
        outbox(&admin).await.iter().all(|c| c.op != CommandOp::Revoke),
        "the entitlement is still held by the second grant"
    );
    let g2 = second.grant.unwrap();
    eventually(Duration::from_secs(8), "second grant to end", || async {
        (alice.grant(g2).await.unwrap().state == GrantState::Ended).then_some(())
    })
    .await;
    let revokes: Vec<_> = outbox(&admin)
        .await
        .into_iter()
        .filter(|c| c.op == CommandOp::Revoke)
        .collect();
    assert_eq!(revokes.len(), 1, "one revoke when the last lease ends");
    assert_eq!(outbox(&admin).await.len(), 1, "the revoke superseded the grant");
    assert_eq!(alice.request(second.id).await.unwrap().state, RequestState::Ended);
}

#[tokio::test]
async fn early_end_by_the_holder_revokes_at_once() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let (alice, bob) = (b.client("alice"), b.client("bob"));
    let r = request(&alice, "auto-admin", 3600).await;
    let grant = r.grant.unwrap();
    // Someone else (not an admin) may not end it.
    let (code, _) = status(bob.revoke(grant, None).await);
    assert_eq!(code, StatusCode::FORBIDDEN);
    let ended = alice.revoke(grant, Some("done early".into())).await.unwrap();
    assert_eq!(ended.state, GrantState::Ended);
    assert_eq!(ended.end_reason, Some(EndReason::Revoked));
    assert_eq!(ended.ended_by.as_ref().map(|u| u.as_str()), Some("alice"));
    let cmds = outbox(&b.client("admin")).await;
    assert_eq!(
        cmds[0].op,
        CommandOp::Revoke,
        "revokes are queued ahead of grants"
    );
    let (code, _) = status(alice.revoke(grant, None).await);
    assert_eq!(code, StatusCode::CONFLICT, "already ended");
    assert_eq!(
        alice.request(r.id).await.unwrap().end_reason,
        Some(EndReason::Revoked)
    );
}

#[tokio::test]
async fn admin_can_end_anyones_grant_and_cancel_requests() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let (alice, admin) = (b.client("alice"), b.client("admin"));
    let r = request(&alice, "auto-admin", 3600).await;
    let ended = admin.revoke(r.grant.unwrap(), None).await.unwrap();
    assert_eq!(ended.ended_by.as_ref().map(|u| u.as_str()), Some("admin"));
    let pending = request(&alice, "dev-admin", 600).await;
    let (code, _) = status(b.client("bob").cancel(pending.id).await);
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        alice.cancel(pending.id).await.unwrap().state,
        RequestState::Cancelled
    );
    let (code, _) = status(b.client("bob").approve(pending.id, None).await);
    assert_eq!(code, StatusCode::CONFLICT);
}

#[tokio::test]
async fn extension_at_once_or_through_approval() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let (alice, bob, carol) = (b.client("alice"), b.client("bob"), b.client("carol"));
    // dev: extended at once, within max_total.
    let r = request(&alice, "dev-admin", 600).await;
    let r = bob.approve(r.id, None).await.unwrap();
    let g = alice.grant(r.grant.unwrap()).await.unwrap();
    let body = ExtendBody {
        duration_seconds: 600,
        justification: None,
        ticket: None,
    };
    let ExtendOutcome::Extended { grant } = alice.extend(g.id, &body).await.unwrap() else {
        panic!("dev extensions need no approval")
    };
    assert_eq!(grant.ends_at, g.ends_at + chrono::Duration::seconds(600));
    assert_eq!(grant.extensions, 1);
    let too_long = ExtendBody {
        duration_seconds: 3600,
        justification: None,
        ticket: None,
    };
    let (code, msg) = status(alice.extend(g.id, &too_long).await);
    assert_eq!(code, StatusCode::BAD_REQUEST, "{msg}");
    let prolonged = outbox(&b.client("admin")).await;
    assert!(
        prolonged.iter().any(|c| c.not_after == grant.ends_at),
        "the agent is told the new deadline"
    );

    // prod: the extension is a request that needs the same 2 approvals.
    let r = request(&alice, "prod-admin", 600).await;
    bob.approve(r.id, None).await.unwrap();
    let r = carol.approve(r.id, None).await.unwrap();
    let g = alice.grant(r.grant.unwrap()).await.unwrap();
    let ExtendOutcome::PendingApproval { request: ext } = alice.extend(g.id, &body).await.unwrap() else {
        panic!("prod extensions need approval")
    };
    assert_eq!(ext.state, RequestState::Pending);
    assert_eq!(
        alice.grant(g.id).await.unwrap().ends_at,
        g.ends_at,
        "not extended before approval"
    );
    bob.approve(ext.id, None).await.unwrap();
    carol.approve(ext.id, None).await.unwrap();
    assert_eq!(
        alice.grant(g.id).await.unwrap().ends_at,
        g.ends_at + chrono::Duration::seconds(600)
    );
}

#[tokio::test]
async fn requesters_see_only_their_own() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let (alice, bob) = (b.client("alice"), b.client("bob"));
    let mine = request(&alice, "dev-admin", 60).await;
    let bobs = request(&bob, "dev-admin", 60).await;
    let listed = alice.requests(&[]).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].id, mine.id);
    let (code, _) = status(alice.request(bobs.id).await);
    assert_eq!(code, StatusCode::NOT_FOUND);
    // Approvers see everything, newest first.
    let all = bob.requests(&[("state", "pending".into())]).await.unwrap();
    assert_eq!(
        all.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![bobs.id, mine.id]
    );
}

#[tokio::test]
async fn who_lost_eligibility_cannot_extend() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let (alice, bob, admin) = (b.client("alice"), b.client("bob"), b.client("admin"));
    let r = request(&alice, "dev-admin", 600).await;
    let r = bob.approve(r.id, None).await.unwrap();
    let g = alice.grant(r.grant.unwrap()).await.unwrap();
    // Alice leaves the developers group: the policy no longer lets her ask.
    admin
        .update_user(&jitgate_shared::v1::api::UserBody {
            id: "alice".parse().unwrap(),
            display_name: String::new(),
            email: Some("alice@example.com".into()),
            roles: [jitgate_shared::v1::api::Role::Requester].into(),
            groups: Default::default(),
            person: None,
        })
        .await
        .unwrap();
    let body = ExtendBody {
        duration_seconds: 600,
        justification: None,
        ticket: None,
    };
    let (code, msg) = status(alice.extend(g.id, &body).await);
    assert_eq!(code, StatusCode::FORBIDDEN, "{msg}");
    assert!(msg.contains("may no longer request"), "{msg}");
    assert_eq!(
        alice.grant(g.id).await.unwrap().ends_at,
        g.ends_at,
        "not extended"
    );
}
