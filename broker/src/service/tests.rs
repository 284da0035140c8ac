//! Services over a real store with a manual clock: scheduling precision and
//! a property test of random interleavings against lease invariants.

use std::collections::{BTreeMap, BTreeSet};

use jitgate_shared::v1::api::{CommandOp, EndReason, ExtendBody, GrantState, ReviewBody, Role};
use jitgate_shared::v1::{GrantId, RequestId};
use proptest::prelude::*;

use super::*;
use crate::domain::lease::Lease;
use crate::store::PageQuery;
use crate::testing::{body, harness, Harness};

#[tokio::test]
async fn a_job_later_in_the_same_millisecond_waits_for_its_instant() {
    let h = harness().await;
    let g = h
        .broker
        .create_request(&h.users[0], body("auto", 60))
        .await
        .unwrap()
        .grant
        .unwrap();
    let grant = h.broker.store.grant(g).await.unwrap().unwrap();
    // Just before ends_at, inside the same millisecond.
    h.clock.set(grant.ends_at - chrono::Duration::microseconds(400));
    h.drain().await;
    let still = h.broker.store.grant(g).await.unwrap().unwrap();
    assert_eq!(still.state, GrantState::Active, "not ended early");
    assert_eq!(
        h.broker.store.job_count().await.unwrap(),
        1,
        "and its expiry is not dropped"
    );
    h.clock.set(grant.ends_at);
    h.drain().await;
    assert_eq!(
        h.broker.store.grant(g).await.unwrap().unwrap().state,
        GrantState::Ended
    );
    assert_eq!(h.broker.store.job_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_restart_runs_overdue_expiries_at_once() {
    let h = harness().await;
    for u in &h.users {
        h.broker.create_request(u, body("auto", 30)).await.unwrap();
    }
    // Time passes while nothing runs; the next run ends all three.
    h.clock.advance(chrono::Duration::hours(2));
    let run = h.broker.run_due_jobs().await.unwrap();
    assert_eq!(run.done, 3);
    let out = h.broker.store.outbox(&"aws".parse().unwrap(), 100).await.unwrap();
    assert_eq!(out.iter().filter(|c| c.op == CommandOp::Revoke).count(), 3);
}

#[tokio::test]
async fn grant_commands_carry_the_workflows_session_cap_and_both_carry_ending_sign_in_sessions() {
    let h = harness().await;
    let g = h
        .broker
        .create_request(&h.users[0], body("auto", 60))
        .await
        .unwrap()
        .grant
        .unwrap();
    let grant = h.broker.store.grant(g).await.unwrap().unwrap();
    assert!(grant.cap_session_duration, "recorded on the grant at approval");
    assert!(grant.end_sign_in_sessions, "recorded on the grant at approval");
    let aws = "aws".parse().unwrap();
    let out = h.broker.store.outbox(&aws, 10).await.unwrap();
    assert!(
        out.iter()
            .all(|c| c.op == CommandOp::Grant && c.cap_session_duration && c.end_sign_in_sessions),
        "{out:?}"
    );
    h.clock.set(grant.ends_at);
    h.drain().await;
    let out = h.broker.store.outbox(&aws, 10).await.unwrap();
    assert!(
        out.iter()
            .all(|c| c.op == CommandOp::Revoke && !c.cap_session_duration && c.end_sign_in_sessions),
        "{out:?}"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Ask {
        user: usize,
        auto: bool,
        secs: u64,
    },
    Review {
        by: usize,
        request: usize,
        approve: bool,
    },
    Cancel {
        request: usize,
    },
    Revoke {
        grant: usize,
    },
    Extend {
        grant: usize,
        secs: u64,
    },
    Advance {
        secs: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..3, any::<bool>(), 1u64..600).prop_map(|(user, auto, secs)| Op::Ask { user, auto, secs }),
        2 => (0usize..3, 0usize..8, any::<bool>()).prop_map(|(by, request, approve)| Op::Review { by, request, approve }),
        1 => (0usize..8).prop_map(|request| Op::Cancel { request }),
        1 => (0usize..8).prop_map(|grant| Op::Revoke { grant }),
        1 => (0usize..8, 1u64..600).prop_map(|(grant, secs)| Op::Extend { grant, secs }),
        3 => (1i64..400).prop_map(|secs| Op::Advance { secs }),
    ]
}

/// After every step: each entitlement's lease holds exactly its active
/// grants; an entitlement is applied (last command a grant) exactly while it
/// is held; no active grant outlives its window once due jobs ran.
async fn check_invariants(h: &Harness) -> Result<(), TestCaseError> {
    let store = &h.broker.store;
    let all = PageQuery {
        after: None,
        limit: 10_000,
    };
    let grants = store
        .grants(&all, &crate::store::GrantFilter::default())
        .await
        .unwrap();
    let mut active: BTreeMap<String, BTreeSet<GrantId>> = BTreeMap::new();
    for g in &grants {
        let key = Lease::key_for(&g.entitlement);
        active.entry(key.clone()).or_default();
        if g.state == GrantState::Active {
            prop_assert!(g.ends_at > h.clock.now(), "active past its window: {:?}", g);
            active.get_mut(&key).unwrap().insert(g.id);
        }
    }
    let outbox = store.outbox(&"aws".parse().unwrap(), 100_000).await.unwrap();
    for (key, holders) in active {
        let lease = store.lease(&key).await.unwrap();
        let held: BTreeSet<GrantId> = lease
            .map(|l| l.holders.keys().copied().collect())
            .unwrap_or_default();
        prop_assert_eq!(&held, &holders, "lease {} holders differ from active grants", key);
        // Commands for this entitlement in lease order: by generation (part
        // of the id), and within one generation grants before the revoke.
        let generation = |c: &&crate::outbox::Command| -> u64 {
            c.id.split('-').nth(1).and_then(|g| g.parse().ok()).unwrap_or(0)
        };
        let mut cmds: Vec<_> = outbox
            .iter()
            .filter(|c| Lease::key_for(&c.entitlement) == key)
            .collect();
        cmds.sort_by_key(|c| (generation(c), c.op == CommandOp::Revoke));
        let applied = cmds.last().is_some_and(|c| c.op == CommandOp::Grant);
        prop_assert_eq!(
            applied,
            !holders.is_empty(),
            "entitlement {} applied={} held={:?}",
            key,
            applied,
            holders
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_never_drop_a_lease(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = harness().await;
            let mut requests: Vec<RequestId> = Vec::new();
            let mut grants: Vec<GrantId> = Vec::new();
            for op in ops {
                match op {
                    Op::Ask { user, auto, secs } => {
                        let r = h.broker.create_request(&h.users[user], body(if auto { "auto" } else { "dev" }, secs)).await;
                        if let Ok(r) = r {
                            requests.push(r.id);
                            grants.extend(r.grant);
                        }
                    }
                    Op::Review { by, request, approve } => {
                        if let Some(id) = requests.get(request) {
                            let d = if approve { jitgate_shared::v1::api::Decision::Approve } else { jitgate_shared::v1::api::Decision::Deny };
                            if let Ok(r) = h.broker.review_request(&h.users[by], *id, d, ReviewBody::default()).await {
                                grants.extend(r.grant);
                            }
                        }
                    }
                    Op::Cancel { request } => {
                        if let Some(id) = requests.get(request) {
                            let owner = h.broker.store.request(*id).await.unwrap().unwrap().requester;
                            let u = h.users.iter().find(|u| u.id == owner).unwrap();
                            let _ = h.broker.cancel_request(u, *id).await;
                        }
                    }
                    Op::Revoke { grant } => {
                        if let Some(id) = grants.get(grant) {
                            let owner = h.broker.store.grant(*id).await.unwrap().unwrap().user;
                            let u = h.users.iter().find(|u| u.id == owner).unwrap();
                            let _ = h.broker.revoke_grant(u, *id, Default::default()).await;
                        }
                    }
                    Op::Extend { grant, secs } => {
                        if let Some(id) = grants.get(grant) {
                            let owner = h.broker.store.grant(*id).await.unwrap().unwrap().user;
                            let u = h.users.iter().find(|u| u.id == owner).unwrap();
                            let _ = h.broker.extend_grant(u, *id, ExtendBody { duration_seconds: secs, justification: None, ticket: None }).await;
                        }
                    }
                    Op::Advance { secs } => {
                        h.clock.advance(chrono::Duration::seconds(secs));
                        h.drain().await;
                    }
                }
                check_invariants(&h).await?;
            }
            // In the end every window closes and nothing stays applied.
            h.clock.advance(chrono::Duration::hours(3));
            h.drain().await;
            check_invariants(&h).await?;
            let out = h.broker.store.outbox(&"aws".parse().unwrap(), 100_000).await.unwrap();
            // The outbox keeps the newest command per entitlement: in the
            // end that is a revoke for everything that was ever applied.
            prop_assert!(out.iter().all(|c| c.op == CommandOp::Revoke), "only revokes are left queued");
            let revoked: BTreeSet<_> = out.iter().map(|c| Lease::key_for(&c.entitlement)).collect();
            for id in &grants {
                let g = h.broker.store.grant(*id).await.unwrap().unwrap();
                if matches!(g.end_reason, Some(EndReason::Expired | EndReason::Revoked)) {
                    prop_assert!(revoked.contains(&Lease::key_for(&g.entitlement)), "grant {} was active and its entitlement has no revoke queued", id);
                }
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn only_enrolled_unrevoked_agents_of_their_configuration_are_admitted() {
    use jitgate_shared::v1::api::{CreateJoinTokenBody, EnrollBody, Role};
    use jitgate_shared::v1::{AgentId, ConfigId};

    use crate::tls::agent::AgentIdentity;

    let h = harness().await;
    let mut admin = h.users[0].clone();
    admin.roles.insert(Role::Admin);
    let token = h
        .broker
        .create_join_token(
            &admin,
            CreateJoinTokenBody {
                configuration: ConfigId::new("aws").unwrap(),
                ttl_seconds: None,
            },
        )
        .await
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let enrolled = h
        .broker
        .enroll(EnrollBody {
            token: token.token,
            csr_pem: csr,
        })
        .await
        .unwrap();
    let identity = AgentIdentity {
        agent: enrolled.agent.id,
        configuration: ConfigId::new("aws").unwrap(),
    };
    assert!(h.broker.admit_agent(&identity).await.is_ok());
    let elsewhere = AgentIdentity {
        configuration: ConfigId::new("entra").unwrap(),
        ..identity.clone()
    };
    let err = h.broker.admit_agent(&elsewhere).await.unwrap_err();
    assert!(err.to_string().contains("another configuration"), "{err}");
    let stranger = AgentIdentity {
        agent: AgentId::generate(),
        ..identity.clone()
    };
    assert!(h
        .broker
        .admit_agent(&stranger)
        .await
        .unwrap_err()
        .to_string()
        .contains("not enrolled"));
    h.broker.revoke_agent(&admin, identity.agent).await.unwrap();
    let err = h.broker.admit_agent(&identity).await.unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[tokio::test]
async fn an_extension_takes_a_ticket_where_the_workflow_asks_for_one() {
    let h = harness().await;
    let ask = jitgate_shared::v1::api::CreateRequestBody {
        ticket: Some("OPS-1".into()),
        ..body("ticketed", 60)
    };
    let g = h
        .broker
        .create_request(&h.users[0], ask)
        .await
        .unwrap()
        .grant
        .unwrap();
    let extend = |ticket: Option<&str>| ExtendBody {
        duration_seconds: 60,
        justification: None,
        ticket: ticket.map(str::to_owned),
    };
    for (ticket, expected) in [(None, "ticket is required"), (Some("nope"), "does not match")] {
        let err = h
            .broker
            .extend_grant(&h.users[0], g, extend(ticket))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{ticket:?}: {err}");
    }
    let before = h.broker.store.grant(g).await.unwrap().unwrap().ends_at;
    h.broker
        .extend_grant(&h.users[0], g, extend(Some("OPS-2")))
        .await
        .unwrap();
    let after = h.broker.store.grant(g).await.unwrap().unwrap().ends_at;
    assert_eq!(after, before + chrono::Duration::seconds(60));
}

#[tokio::test]
async fn reconciliation_revokes_again_what_jitgate_granted_and_no_grant_holds() {
    use jitgate_shared::v1::protocol::Outcome;
    use jitgate_shared::v1::AgentId;
    let h = harness().await;
    let aws: jitgate_shared::v1::ConfigId = "aws".parse().unwrap();
    let g = h
        .broker
        .create_request(&h.users[0], body("auto", 60))
        .await
        .unwrap()
        .grant
        .unwrap();
    let grant = h.broker.store.grant(g).await.unwrap().unwrap();
    h.broker
        .revoke_grant(&h.users[0], g, Default::default())
        .await
        .unwrap();
    let agent = AgentId::generate();
    for c in h.broker.store.outbox(&aws, 10).await.unwrap() {
        h.broker
            .answer_command(agent, &c, Outcome::Revoked)
            .await
            .unwrap();
    }
    assert!(h.broker.store.outbox(&aws, 10).await.unwrap().is_empty());
    // The tenant still has it (undone by hand, or a revoke lost), and
    // something jitgate never granted.
    let mut stranger = grant.entitlement.clone();
    stranger.principal = "someone-else".into();
    let report = h
        .broker
        .reconcile(agent, &aws, vec![grant.entitlement.clone(), stranger.clone()])
        .await
        .unwrap();
    assert_eq!(report.unexpected.len(), 2);
    let queued = h.broker.store.outbox(&aws, 10).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].op, CommandOp::Revoke);
    assert_eq!(
        queued[0].entitlement, grant.entitlement,
        "only what jitgate granted, without remove_unexpected"
    );
}

#[tokio::test]
async fn an_id_is_identified_as_what_it_names_only_for_those_who_may_see_it() {
    use jitgate_shared::v1::api::{Identified, UserBody};
    let h = harness().await;
    let created = h
        .broker
        .create_request(&h.users[0], body("auto", 60))
        .await
        .unwrap();
    let grant = created.grant.unwrap();
    let request = created.id;
    let found = h.broker.identify(&h.users[0], request.as_uuid()).await.unwrap();
    assert!(matches!(found, Identified::Request(r) if r.id == request));
    let found = h.broker.identify(&h.users[0], grant.as_uuid()).await.unwrap();
    assert!(matches!(found, Identified::Grant(g) if g.id == grant));

    // A requester who is not the owner learns no more than from an id
    // that names nothing.
    h.broker
        .save_user(
            crate::audit::Actor::System,
            UserBody {
                id: "dan".parse().unwrap(),
                display_name: String::new(),
                email: None,
                roles: [Role::Requester].into(),
                groups: ["people".to_owned()].into(),
                person: None,
            },
        )
        .await
        .unwrap();
    let dan = h
        .broker
        .store
        .user(&"dan".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    for id in [request.as_uuid(), grant.as_uuid(), uuid::Uuid::now_v7()] {
        let err = h.broker.identify(&dan, id).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            ServiceError::not_found("request or grant", id).to_string()
        );
    }
}
