//! The agent's AWS providers against a real moto server: each operation
//! with the answer the broker will see, then the whole system.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ssoadmin::types::PrincipalType;
use jitgate_agent::provider::aws::iam::Iam;
use jitgate_agent::provider::aws::identity_center::{
    IdentityCenter, IdentityCenterSettings, PrincipalAttribute,
};
use jitgate_agent::provider::budget::{Budget, BudgetSettings};
use jitgate_agent::provider::{Effect, Provider, Window};
use jitgate_shared::v1::protocol::FailureKind;
use jitgate_shared::v1::{ConfigId, Entitlement, Target};
use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::http_faults::HttpFaultProxy;
use jitgate_tests::moto::{self, Moto};

use crate::agents::{applied, removed, FAST};
use crate::support::request;

const ACCOUNT: &str = "111122223333";

fn budget() -> Arc<Budget> {
    Arc::new(Budget::new(BudgetSettings {
        rate: NonZeroU32::new(200).unwrap(),
        operations: 5,
        throttle_pause: Duration::from_millis(50),
        throttle_pause_max: Duration::from_secs(1),
    }))
}

async fn identity_center(m: &Moto, attribute: PrincipalAttribute) -> IdentityCenter {
    IdentityCenter::connect(
        ConfigId::new("aws-test").unwrap(),
        &m.sdk,
        IdentityCenterSettings {
            instance_arn: None,
            principal_attribute: attribute,
            operation_timeout: Duration::from_secs(10),
        },
        budget(),
    )
    .await
    .unwrap()
}

fn assignment(principal: &str, account: &str, permission_set: &str) -> Entitlement {
    Entitlement {
        configuration: ConfigId::new("aws-test").unwrap(),
        target: Target::AwsAccountAssignment {
            account_id: account.into(),
            permission_set: permission_set.into(),
        },
        principal: principal.into(),
    }
}

#[tokio::test]
async fn identity_center_grants_revokes_and_lists_assignments_idempotently() {
    let m = Moto::start().await;
    let admin_ps = m.permission_set("Admin").await;
    let alice = m.user("alice", "alice@example.com").await;
    let ops = m.group("ops").await;
    let p = identity_center(&m, PrincipalAttribute::Email).await;

    let a = assignment("alice@example.com", ACCOUNT, "Admin");
    assert_eq!(p.apply(&a).await.unwrap(), Effect::Changed);
    assert_eq!(
        m.assignments(ACCOUNT, &admin_ps).await,
        vec![(PrincipalType::User, alice.clone())]
    );
    assert_eq!(p.apply(&a).await.unwrap(), Effect::Unchanged, "already assigned");
    assert_eq!(
        m.assignments(ACCOUNT, &admin_ps).await.len(),
        1,
        "not assigned twice"
    );

    // A group, and the permission set named by its ARN.
    let g = assignment("group:ops", ACCOUNT, &admin_ps);
    assert_eq!(p.apply(&g).await.unwrap(), Effect::Changed);
    assert!(m
        .assignments(ACCOUNT, &admin_ps)
        .await
        .contains(&(PrincipalType::Group, ops)));

    let mut listed = p.list(&[a.target.clone(), g.target.clone()]).await.unwrap();
    listed.sort();
    listed.dedup();
    let principals: Vec<&str> = listed.iter().map(|e| e.principal.as_str()).collect();
    assert!(
        principals.contains(&"alice@example.com") && principals.contains(&"group:ops"),
        "{principals:?}"
    );

    assert_eq!(p.remove(&a).await.unwrap(), Effect::Changed);
    assert_eq!(p.remove(&a).await.unwrap(), Effect::Unchanged, "already gone");
    assert_eq!(p.remove(&g).await.unwrap(), Effect::Changed);
    assert!(m.assignments(ACCOUNT, &admin_ps).await.is_empty());
    assert!(p.list(std::slice::from_ref(&a.target)).await.unwrap().is_empty());
}

#[tokio::test]
async fn identity_center_tells_whether_a_user_holds_an_assignment_directly_or_through_a_group() {
    let m = Moto::start().await;
    m.permission_set("AdminAccess").await;
    let alice = m.user("alice", "alice@example.com").await;
    let group = m.group("aws-admins").await;
    let p = identity_center(&m, PrincipalAttribute::Email).await;
    let hers = assignment("alice@example.com", ACCOUNT, "AdminAccess");
    assert!(!p.holds(&hers).await.unwrap(), "nothing assigned yet");
    // The permission set is assigned to the group a directory provisions.
    let to_group = assignment("group:aws-admins", ACCOUNT, "AdminAccess");
    assert_eq!(p.apply(&to_group).await.unwrap(), Effect::Changed);
    assert!(!p.holds(&hers).await.unwrap(), "not a member yet");
    let membership = m.add_member(&group, &alice).await;
    assert!(p.holds(&hers).await.unwrap(), "in effect through the group");
    m.remove_member(&membership).await;
    assert!(!p.holds(&hers).await.unwrap(), "gone with the membership");
    // Directly assigned.
    p.apply(&hers).await.unwrap();
    assert!(p.holds(&hers).await.unwrap());
    assert!(!p
        .holds(&assignment("nobody@example.com", ACCOUNT, "AdminAccess"))
        .await
        .unwrap());
}

#[tokio::test]
async fn identity_center_finds_users_by_user_name_too() {
    let m = Moto::start().await;
    let ps = m.permission_set("ReadOnly").await;
    let bob = m.user("bob", "bob@example.com").await;
    let p = identity_center(&m, PrincipalAttribute::UserName).await;
    let e = assignment("bob", ACCOUNT, "ReadOnly");
    assert_eq!(p.apply(&e).await.unwrap(), Effect::Changed);
    assert_eq!(
        m.assignments(ACCOUNT, &ps).await,
        vec![(PrincipalType::User, bob)]
    );
    let listed = p.list(std::slice::from_ref(&e.target)).await.unwrap();
    assert_eq!(listed, vec![e.clone()], "listed under the same name");
}

#[tokio::test]
async fn identity_center_errors_name_what_is_wrong() {
    let m = Moto::start().await;
    let ps = m.permission_set("Admin").await;
    m.user("alice", "alice@example.com").await;
    let p = identity_center(&m, PrincipalAttribute::Email).await;

    let unknown_user = p
        .apply(&assignment("nobody@example.com", ACCOUNT, "Admin"))
        .await
        .unwrap_err();
    assert_eq!(unknown_user.kind(), FailureKind::NotFound);
    assert!(
        unknown_user.reason().contains("nobody@example.com"),
        "{unknown_user}"
    );

    let bad_account = p
        .apply(&assignment("alice@example.com", "12345", "Admin"))
        .await
        .unwrap_err();
    assert_eq!(bad_account.kind(), FailureKind::Rejected);
    assert!(
        bad_account.reason().contains("`12345` is not an AWS account id"),
        "{bad_account}"
    );

    let unknown_ps = p
        .apply(&assignment("alice@example.com", ACCOUNT, "NoSuchSet"))
        .await
        .unwrap_err();
    assert_eq!(unknown_ps.kind(), FailureKind::NotFound);
    assert!(
        unknown_ps.reason().contains("no permission set `NoSuchSet`"),
        "{unknown_ps}"
    );

    // Revoking what cannot be there is done, not an error.
    assert_eq!(
        p.remove(&assignment("nobody@example.com", ACCOUNT, "Admin"))
            .await
            .unwrap(),
        Effect::Unchanged
    );
    assert_eq!(
        p.remove(&assignment("alice@example.com", ACCOUNT, "Admin"))
            .await
            .unwrap(),
        Effect::Unchanged,
        "not found on revoke"
    );
    assert!(
        m.assignments(ACCOUNT, &ps).await.is_empty(),
        "nothing was assigned"
    );

    let other = p
        .apply(&Entitlement {
            configuration: ConfigId::new("other").unwrap(),
            ..assignment("alice@example.com", ACCOUNT, "Admin")
        })
        .await
        .unwrap_err();
    assert!(other.reason().contains("configuration other"), "{other}");
}

#[tokio::test]
async fn a_grant_can_cap_the_permission_sets_session_duration_to_its_window() {
    let m = Moto::start().await;
    let capped = m.permission_set_with("Capped", "PT8H").await;
    let left_alone = m.permission_set_with("LeftAlone", "PT8H").await;
    m.user("alice", "alice@example.com").await;
    let p = identity_center(&m, PrincipalAttribute::Email).await;
    let window = |minutes: i64, cap: bool| Window {
        until: chrono::Utc::now() + chrono::Duration::minutes(minutes),
        cap_session_duration: cap,
        provision_on_demand: None,
    };

    let e = assignment("alice@example.com", ACCOUNT, "Capped");
    assert_eq!(p.apply_for(&e, &window(90, true)).await.unwrap(), Effect::Changed);
    assert_eq!(
        m.session_duration(&capped).await,
        "PT2H",
        "90 minutes round up to 2 h"
    );
    // Never raised by a longer window.
    assert_eq!(
        p.apply_for(&e, &window(300, true)).await.unwrap(),
        Effect::Unchanged
    );
    assert_eq!(m.session_duration(&capped).await, "PT2H");

    let other = assignment("alice@example.com", ACCOUNT, "LeftAlone");
    assert_eq!(
        p.apply_for(&other, &window(30, false)).await.unwrap(),
        Effect::Changed
    );
    assert_eq!(m.session_duration(&left_alone).await, "PT8H", "not asked to cap");
}

#[tokio::test]
async fn identity_center_start_up_checks_fail_early_with_the_reason() {
    let m = Moto::start().await;
    let wrong = IdentityCenter::connect(
        ConfigId::new("aws-test").unwrap(),
        &m.sdk,
        IdentityCenterSettings {
            instance_arn: Some("arn:aws:sso:::instance/ssoins-0000000000000000".into()),
            principal_attribute: PrincipalAttribute::Email,
            operation_timeout: Duration::from_secs(10),
        },
        budget(),
    )
    .await
    .unwrap_err();
    assert!(
        wrong.reason().contains("ssoins-0000000000000000 not found"),
        "{wrong}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = moto::sdk_for(&format!("http://{closed}")).await;
    let unreachable = IdentityCenter::connect(
        ConfigId::new("aws-test").unwrap(),
        &nowhere,
        IdentityCenterSettings {
            instance_arn: None,
            principal_attribute: PrincipalAttribute::Email,
            operation_timeout: Duration::from_secs(10),
        },
        budget(),
    )
    .await
    .unwrap_err();
    assert!(
        unreachable.reason().contains("Identity Center is not reachable"),
        "{unreachable}"
    );
}

fn iam_entitlement(principal: &str, target: Target) -> Entitlement {
    Entitlement {
        configuration: ConfigId::new("aws-iam").unwrap(),
        target,
        principal: principal.into(),
    }
}

#[tokio::test]
async fn iam_group_membership_and_policy_attachment_are_idempotent() {
    let m = Moto::start().await;
    let iam = m.iam();
    iam.create_user().user_name("bob").send().await.unwrap();
    iam.create_group().group_name("breakglass").send().await.unwrap();
    iam.create_role()
        .role_name("deployer")
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .unwrap();
    let policy = iam
        .create_policy()
        .policy_name("jit-admin")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let p = Iam::connect(ConfigId::new("aws-iam").unwrap(), &m.sdk, budget())
        .await
        .unwrap();

    let member = iam_entitlement(
        "bob",
        Target::AwsIamGroupMembership {
            group_name: "breakglass".into(),
        },
    );
    assert_eq!(p.apply(&member).await.unwrap(), Effect::Changed);
    assert_eq!(p.apply(&member).await.unwrap(), Effect::Unchanged);
    let group = iam.get_group().group_name("breakglass").send().await.unwrap();
    assert_eq!(group.users().len(), 1);

    let attach = Target::AwsIamPolicyAttachment {
        policy_arn: policy.clone(),
    };
    let to_user = iam_entitlement("bob", attach.clone());
    let to_role = iam_entitlement("role:deployer", attach.clone());
    for e in [&to_user, &to_role] {
        assert_eq!(p.apply(e).await.unwrap(), Effect::Changed);
        assert_eq!(p.apply(e).await.unwrap(), Effect::Unchanged);
    }
    let mut listed = p.list(&[member.target.clone(), attach.clone()]).await.unwrap();
    listed.sort();
    let mut want = vec![member.clone(), to_user.clone(), to_role.clone()];
    want.sort();
    assert_eq!(listed, want);

    for e in [&member, &to_user, &to_role] {
        assert_eq!(p.remove(e).await.unwrap(), Effect::Changed);
        assert_eq!(p.remove(e).await.unwrap(), Effect::Unchanged);
    }
    assert!(p.list(&[member.target.clone(), attach]).await.unwrap().is_empty());

    let nobody = p
        .apply(&iam_entitlement(
            "nobody",
            Target::AwsIamGroupMembership {
                group_name: "breakglass".into(),
            },
        ))
        .await
        .unwrap_err();
    assert!(
        nobody.kind() == FailureKind::NotFound && nobody.reason().contains("user `nobody` does not exist"),
        "{nobody}"
    );
    let no_group = p
        .apply(&iam_entitlement(
            "bob",
            Target::AwsIamGroupMembership {
                group_name: "nogroup".into(),
            },
        ))
        .await
        .unwrap_err();
    assert!(
        no_group.reason().contains("group `nogroup` does not exist"),
        "{no_group}"
    );
}

#[tokio::test]
async fn a_request_approved_through_the_api_ends_as_an_assignment_in_moto_and_is_gone_at_expiry() {
    // The agent assumes a role (moto's STS) after the environment's keys.
    let m = Moto::start().await;
    let ps = m.permission_set("ReadOnly").await;
    let alice = m.user("alice", "alice@example.com").await;
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    agent
        .start_provider(
            &[
                "--provider",
                "aws-identity-center",
                "--aws-endpoint-url",
                &m.url,
                "--aws-sdk-max-attempts",
                "1",
                // Through STS (moto's) as production agents usually go.
                "--aws-role-arn",
                "arn:aws:iam::123456789012:role/jitgate-agent",
            ],
            moto::ENV,
        )
        .await;
    agent.connected().await;

    // auto-admin: permission set ReadOnly on 777788889999, auto-approved.
    let r = request(&b.client("alice"), "auto-admin", 3).await;
    let id = r.grant.unwrap();
    applied(&b, id).await;
    assert_eq!(
        m.assignments("777788889999", &ps).await,
        vec![(PrincipalType::User, alice)],
        "agent log:\n{}",
        agent.log()
    );
    let g = removed(&b, id, Duration::from_secs(10)).await;
    assert!(g.removed_at.unwrap() >= g.ends_at);
    assert!(m.assignments("777788889999", &ps).await.is_empty());
    let state = reqwest::get(format!("{}/moto-api/data.json", m.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        state.contains("arn:aws:sts::123456789012:assumed-role/jitgate-agent/jitgate-agent"),
        "the agent worked as the assumed role"
    );
}

/// Applies or removes, retrying transient failures the way the broker does
/// (after the tenant's Retry-After, or a short pause).
async fn until_done(p: &IdentityCenter, e: &Entitlement, grant: bool) -> Effect {
    for _ in 0..200 {
        let r = if grant {
            p.apply(e).await
        } else {
            p.remove(e).await
        };
        match r {
            Ok(effect) => return effect,
            Err(err) if err.retryable() => {
                tokio::time::sleep(err.retry_after().unwrap_or(Duration::from_millis(20))).await;
            }
            Err(err) => panic!(
                "{} failed for good: {err}",
                if grant { "grant" } else { "revoke" }
            ),
        }
    }
    panic!("no success after 200 attempts");
}

#[tokio::test]
async fn under_throttling_and_5xx_500_cycles_end_with_everything_revoked_within_the_budget() {
    const RATE: u32 = 200;
    const USERS: usize = 10;
    const CYCLES: usize = 500;
    let m = Moto::start().await;
    let ps = m.permission_set("Admin").await;
    for i in 0..USERS {
        m.user(&format!("user{i}"), &format!("user{i}@example.com")).await;
    }
    let proxy = HttpFaultProxy::start(&m.url).await;
    let sdk = moto::sdk_for(&proxy.url).await;
    let budget = Arc::new(Budget::new(BudgetSettings {
        rate: NonZeroU32::new(RATE).unwrap(),
        operations: 5,
        throttle_pause: Duration::from_millis(50),
        throttle_pause_max: Duration::from_secs(1),
    }));
    let p = Arc::new(
        IdentityCenter::connect(
            ConfigId::new("aws-test").unwrap(),
            &sdk,
            IdentityCenterSettings {
                instance_arn: None,
                principal_attribute: PrincipalAttribute::Email,
                operation_timeout: Duration::from_secs(10),
            },
            budget.clone(),
        )
        .await
        .unwrap(),
    );
    proxy.faults.throttle_permille.store(100, Ordering::Relaxed);
    proxy.faults.error_permille.store(50, Ordering::Relaxed);

    let mut workers = Vec::new();
    for i in 0..USERS {
        let p = p.clone();
        workers.push(tokio::spawn(async move {
            let e = assignment(&format!("user{i}@example.com"), ACCOUNT, "Admin");
            for _ in 0..CYCLES / USERS {
                // A retried call may find its first attempt took effect:
                // "already" answers are successes.
                until_done(&p, &e, true).await;
                until_done(&p, &e, false).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    proxy.faults.throttle_permille.store(0, Ordering::Relaxed);
    proxy.faults.error_permille.store(0, Ordering::Relaxed);

    assert!(
        m.assignments(ACCOUNT, &ps).await.is_empty(),
        "every assignment revoked"
    );
    let (requests, throttled, failed) = proxy.counts();
    let peak = proxy.peak(Duration::from_secs(1));
    println!(
        "{requests} requests, {throttled} throttled, {failed} 5xx; peak {peak} in any second (budget {RATE}/s); budget stats {:?}",
        budget.stats()
    );
    assert!(throttled > 0 && failed > 0, "faults were injected");
    // The budget holds at dispatch; arrivals at the proxy can bunch by a
    // request or two on a loaded machine.
    assert!(peak <= RATE as usize + 2, "{peak} requests within one second");
}
