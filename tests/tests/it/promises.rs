//! The edges of the two promises, reproduced through the API as an operator
//! would: accounts of one person (same verified email, linked by an admin)
//! never approve each other nor count twice, and ending a user's access
//! with overlapping grants on one entitlement queues its revoke.

use jitgate_shared::v1::api::{CommandOp, GrantState, RequestState, Role, UserBody};
use jitgate_shared::v1::UserId;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use reqwest::StatusCode;

use crate::support::{outbox, request, status};

fn account(id: &str, email: Option<&str>, person: Option<&str>, roles: &[Role]) -> UserBody {
    UserBody {
        id: UserId::new(id).unwrap(),
        display_name: String::new(),
        email: email.map(str::to_owned),
        roles: roles.iter().copied().collect(),
        groups: ["sre".to_owned()].into(),
        person: person.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_second_account_with_the_requesters_email_cannot_approve() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let admin = b.client("admin");
    // Alice's email in another case: linked to her person at creation.
    let issued = admin
        .create_user(&account(
            "alice-ops",
            Some("Alice@Example.COM"),
            None,
            &[Role::Approver],
        ))
        .await
        .unwrap();
    assert_eq!(issued.user.person, "alice", "linked by verified email");
    let ops = b.client("alice").with_token(&issued.token);
    let r = request(&b.client("alice"), "dev-admin", 600).await;
    let (code, msg) = status(ops.approve(r.id, None).await);
    assert_eq!(code, StatusCode::FORBIDDEN, "{msg}");
    assert!(msg.contains("the same person as you"), "{msg}");
    assert_eq!(
        b.client("alice").request(r.id).await.unwrap().state,
        RequestState::Pending
    );
    assert!(outbox(&admin).await.is_empty(), "nothing granted");
    // Bob, another person, may.
    let done = b.client("bob").approve(r.id, None).await.unwrap();
    assert_eq!(done.state, RequestState::Active);
    assert_eq!(done.principal, "alice@example.com", "the principal approvers saw");
}

#[tokio::test]
async fn two_linked_accounts_make_one_approval_and_updates_keep_links() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let admin = b.client("admin");
    let issued = admin
        .create_user(&account("bob-alt", None, Some("bob"), &[Role::Approver]))
        .await
        .unwrap();
    let bob_alt = b.client("bob").with_token(&issued.token);
    let r = request(&b.client("alice"), "prod-admin", 600).await;
    assert_eq!(r.approvals_required, 2);
    let once = b.client("bob").approve(r.id, None).await.unwrap();
    assert_eq!(once.reviews[0].person, "bob");
    let (code, msg) = status(bob_alt.approve(r.id, None).await);
    assert_eq!(code, StatusCode::CONFLICT, "{msg}");
    assert!(msg.contains("as `bob`"), "{msg}");
    let still = b.client("alice").request(r.id).await.unwrap();
    assert_eq!(still.state, RequestState::Pending);
    assert_eq!(still.reviews.len(), 1);
    assert!(outbox(&admin).await.is_empty(), "one person is one approval");
    let done = b.client("carol").approve(r.id, None).await.unwrap();
    assert_eq!(done.state, RequestState::Active);

    // An update that does not name a person keeps the link an admin made.
    let updated = admin
        .update_user(&account("erin", None, None, &[Role::Approver]))
        .await
        .unwrap();
    assert_eq!(updated.person, "alice");
}

#[tokio::test]
async fn disabling_a_user_with_overlapping_grants_queues_exactly_one_revoke() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let admin = b.client("admin");
    let bob = b.client("bob");
    // Two auto-approved grants on one entitlement: one lease, two holders.
    let first = request(&bob, "auto-admin", 600).await;
    let second = request(&bob, "auto-admin", 900).await;
    let grants = [first.grant.unwrap(), second.grant.unwrap()];
    let queued = outbox(&admin).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].op, CommandOp::Grant);

    let disabled = admin.disable_user(&UserId::new("bob").unwrap()).await.unwrap();
    assert!(disabled.disabled);
    for id in grants {
        let g = admin.grant(id).await.unwrap();
        assert_eq!(g.state, GrantState::Ended, "{g:?}");
    }
    let queued = outbox(&admin).await;
    assert_eq!(queued.len(), 1, "the grant command is superseded: {queued:?}");
    assert_eq!(queued[0].op, CommandOp::Revoke);
    let (code, _) = status(bob.whoami().await);
    assert_eq!(code, StatusCode::UNAUTHORIZED, "the account's tokens end with it");
}
