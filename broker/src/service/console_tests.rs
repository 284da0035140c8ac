//! The services the console stands on: one-time sign-in links, the
//! approver's inbox and the requester's catalogue.

use jitgate_shared::v1::api::{Decision, ReviewBody, UserBody};
use jitgate_shared::v1::UserId;

use super::*;
use crate::audit::Actor;
use crate::testing::{body, harness};

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

#[tokio::test]
async fn a_sign_in_link_works_once_within_its_time() {
    let h = harness().await;
    let ann = uid("ann");
    let link = h.broker.issue_sign_in_link_as(Actor::System, &ann).await.unwrap();
    let secret = link.url.rsplit('/').next().unwrap().to_owned();
    assert!(link.url.contains("/console/link/jgl_"), "{}", link.url);
    assert_eq!(h.broker.sign_in_link_user(&secret).await.unwrap().id, ann);
    // Looking does not spend it; using it does, once.
    let tokens = h.broker.redeem_sign_in_link(&secret).await.unwrap();
    let (user, session) = h.broker.authenticate_browser(&tokens.access_token).await.unwrap();
    assert_eq!(user.id, ann);
    assert!(!session.csrf_secret.is_empty(), "the session has a form token");
    assert!(matches!(
        h.broker.redeem_sign_in_link(&secret).await,
        Err(ServiceError::Unauthenticated(_))
    ));
    // Renewed like a SAML session: no provider to ask.
    let renewed = h.broker.refresh_session(&tokens.refresh_token).await.unwrap();
    assert_eq!(renewed.session, session.id);

    let late = h.broker.issue_sign_in_link_as(Actor::System, &ann).await.unwrap();
    h.clock.advance(crate::service::sign_in::LINK_TTL);
    let late = late.url.rsplit('/').next().unwrap();
    assert!(h.broker.redeem_sign_in_link(late).await.is_err(), "expired");
    for forged in [
        "",
        "jgl_",
        "jg_notalink",
        "jgl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert!(h.broker.redeem_sign_in_link(forged).await.is_err(), "{forged}");
    }
}

#[tokio::test]
async fn links_are_only_for_enabled_local_accounts_and_only_admins_make_them() {
    let h = harness().await;
    let ann = &h.users[0];
    assert!(matches!(
        h.broker.issue_sign_in_link(ann, &uid("ben")).await,
        Err(ServiceError::Forbidden(_))
    ));
    let mut sso_user = h.users[1].clone();
    sso_user.identities.insert("okta".into(), "00u1".into());
    let mut change = crate::store::Change::default();
    change.users.push(sso_user);
    h.broker.commit(change).await.unwrap();
    let refused = h.broker.issue_sign_in_link_as(Actor::System, &uid("ben")).await;
    assert!(
        matches!(&refused, Err(ServiceError::Conflict(m)) if m.contains("okta")),
        "{refused:?}"
    );
    // An API token is not a browser session.
    let issued = h.broker.issue_token_as(Actor::System, &uid("cat")).await.unwrap();
    assert!(h.broker.authenticate_browser(&issued.token).await.is_err());
}

#[tokio::test]
async fn the_inbox_never_holds_ones_own_request_and_marks_what_one_reviewed() {
    let h = harness().await;
    let (ann, ben, cat) = (&h.users[0], &h.users[1], &h.users[2]);
    let r = h.broker.create_request(ann, body("prod", 60)).await.unwrap();
    assert!(
        h.broker.inbox(ann).await.unwrap().is_empty(),
        "not to its requester"
    );
    let for_ben = h.broker.inbox(ben).await.unwrap();
    assert_eq!(for_ben.len(), 1);
    assert!(!for_ben[0].reviewed);
    assert_eq!(for_ben[0].request.id, r.id);
    assert!(!for_ben[0].approving_policies.is_empty());
    h.broker
        .review_request(ben, r.id, Decision::Approve, ReviewBody::default())
        .await
        .unwrap();
    assert!(h.broker.inbox(ben).await.unwrap()[0].reviewed, "ben voted");
    assert!(!h.broker.inbox(cat).await.unwrap()[0].reviewed);

    // Cat links her account to Ann's person: Ann's request leaves her inbox.
    h.broker
        .save_user(
            Actor::System,
            UserBody {
                id: cat.id.clone(),
                display_name: String::new(),
                email: None,
                roles: cat.roles.clone(),
                groups: cat.groups.clone(),
                person: Some(ann.person.clone()),
            },
        )
        .await
        .unwrap();
    let cat = h.broker.store.user(&cat.id).await.unwrap().unwrap();
    assert!(h.broker.inbox(&cat).await.unwrap().is_empty(), "the same person");
    // Earlier requests of the requester for the resource are its history.
    let second = h.broker.create_request(ann, body("prod", 60)).await.unwrap();
    let entries = h.broker.inbox(ben).await.unwrap();
    let newest = entries.iter().find(|e| e.request.id == second.id).unwrap();
    assert_eq!(newest.history.first().map(|v| v.id), Some(r.id));
}

#[tokio::test]
async fn the_inbox_holds_every_pending_request_oldest_first_past_a_page() {
    let h = harness().await;
    let (ann, ben) = (&h.users[0], &h.users[1]);
    let n = crate::store::MAX_PAGE + 5;
    let mut first = None;
    for _ in 0..n {
        let r = h.broker.create_request(ann, body("prod", 60)).await.unwrap();
        first.get_or_insert(r.id);
    }
    let inbox = h.broker.inbox(ben).await.unwrap();
    assert_eq!(inbox.len(), n);
    assert_eq!(inbox.first().map(|e| e.request.id), first, "the oldest first");
}

#[tokio::test]
async fn the_catalogue_lists_what_policies_let_one_request_with_its_workflow() {
    let h = harness().await;
    let entries = h.broker.catalogue(&h.users[0]).await.unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e.resource.id.as_str()).collect();
    assert_eq!(ids, ["auto", "dev", "prod", "ticketed"]);
    let prod = &entries[2];
    assert_eq!(prod.workflow.approvals_required, 2);
    assert_eq!(prod.approvers, [uid("ben"), uid("cat")], "never oneself");
    let ticketed = &entries[3];
    assert_eq!(ticketed.workflow.ticket_pattern.as_deref(), Some("OPS-[0-9]+"));
    assert_eq!(ticketed.workflow.approvals_required, 0);
    // Without the requester role, nothing.
    let mut approver_only = h.users[1].clone();
    approver_only
        .roles
        .remove(&jitgate_shared::v1::api::Role::Requester);
    assert!(h.broker.catalogue(&approver_only).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_extension_offered_is_what_the_workflow_still_allows() {
    let h = harness().await;
    let ann = &h.users[0];
    // `auto`: extension allowed up to 1 h in all (the defaults).
    let made = h.broker.create_request(ann, body("auto", 600)).await.unwrap();
    let grant = h.broker.get_grant(ann, made.grant.unwrap()).await.unwrap();
    let room = h
        .broker
        .extension_room(std::slice::from_ref(&grant))
        .await
        .unwrap();
    assert_eq!(room.get(&grant.id), Some(&3000));
    let choices =
        crate::console::view::extend_choices(crate::console::text::Lang::En, room.get(&grant.id).copied());
    assert!(choices.iter().all(|(s, _, _)| *s <= 3000) && choices.iter().any(|(s, _, _)| *s == 3000));
    h.broker
        .extend_grant(
            ann,
            grant.id,
            jitgate_shared::v1::api::ExtendBody {
                duration_seconds: 3000,
                justification: None,
                ticket: None,
            },
        )
        .await
        .unwrap();
    let grant = h.broker.get_grant(ann, grant.id).await.unwrap();
    let room = h
        .broker
        .extension_room(std::slice::from_ref(&grant))
        .await
        .unwrap();
    assert_eq!(room.get(&grant.id), Some(&0));
    assert!(
        crate::console::view::extend_choices(crate::console::text::Lang::En, Some(0)).is_empty(),
        "nothing left to offer: no extend form"
    );
}
