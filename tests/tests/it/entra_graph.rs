//! The `entra` provider against the Graph contract fake: group membership,
//! directory roles and PIM for Groups with expirations, lists, idempotent
//! repeats, errors naming what is wrong, throttling, replication delay,
//! server errors and tokens Graph stops taking.

use std::time::Duration;

use chrono::Utc;
use jitgate_agent::provider::entra::credential::EntraAuth;
use jitgate_agent::provider::entra::{Entra, EntraSettings};
use jitgate_agent::provider::{Effect, Ending, Provider, Window};
use jitgate_shared::v1::protocol::FailureKind;
use jitgate_shared::v1::{ConfigId, Entitlement, PimGroupAccess, Target};
use jitgate_tests::graph_fake::{App, GraphFake};

use crate::support;

pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
pub const SECRET: &str = "s3cret-value";
/// Built-in role template id of Global Reader.
const GLOBAL_READER: &str = "f2ef992c-3afb-46b9-b7cf-a126ee74c451";

pub async fn fake() -> GraphFake {
    GraphFake::start(vec![App {
        tenant: TENANT.into(),
        client_id: CLIENT.into(),
        secret: SECRET.into(),
        ..App::default()
    }])
    .await
}

pub fn settings(f: &GraphFake, rate: u32) -> EntraSettings {
    f.provider_settings(TENANT, CLIENT, SECRET, rate)
}

async fn entra(f: &GraphFake) -> Entra {
    Entra::connect(config(), settings(f, 100)).await.unwrap()
}

fn config() -> ConfigId {
    ConfigId::new("entra-test").unwrap()
}

fn member(principal: &str, group: &str) -> Entitlement {
    Entitlement {
        configuration: config(),
        target: Target::EntraGroupMembership {
            group_id: group.into(),
        },
        principal: principal.into(),
    }
}

fn role(principal: &str) -> Entitlement {
    Entitlement {
        configuration: config(),
        target: Target::EntraDirectoryRole {
            role_definition_id: GLOBAL_READER.into(),
            directory_scope_id: "/".into(),
        },
        principal: principal.into(),
    }
}

fn pim(principal: &str, group: &str) -> Entitlement {
    Entitlement {
        configuration: config(),
        target: Target::EntraPimGroup {
            group_id: group.into(),
            access: PimGroupAccess::Member,
        },
        principal: principal.into(),
    }
}

fn window(seconds: i64) -> Window {
    Window {
        until: Utc::now() + chrono::Duration::seconds(seconds),
        cap_session_duration: false,
        provision_on_demand: None,
    }
}

fn principals(list: &[Entitlement]) -> Vec<&str> {
    let mut p: Vec<&str> = list.iter().map(|e| e.principal.as_str()).collect();
    p.sort_unstable();
    p
}

#[tokio::test]
async fn group_membership_by_upn_mail_and_object_id_is_idempotent_and_listed() {
    let f = fake().await;
    f.set(|s| s.page_size = 2);
    let alice = f.add_user("alice@contoso.com", Some("alice@contoso.com"));
    let bob = f.add_user(
        "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        Some("bob@fabrikam.com"),
    );
    let carol = f.add_user("carol@contoso.com", None);
    let admins = f.add_group("Cloud admins");
    let other = f.add_user("dave@contoso.com", None);
    f.add_member(&admins, &other);
    let p = entra(&f).await;

    // By user principal name, by mail (a guest), by object id.
    for who in ["alice@contoso.com", "bob@fabrikam.com", carol.as_str()] {
        let e = member(who, &admins);
        assert_eq!(
            p.apply_for(&e, &window(600)).await.unwrap(),
            Effect::Changed,
            "{who}"
        );
        assert_eq!(
            p.apply_for(&e, &window(600)).await.unwrap(),
            Effect::Unchanged,
            "{who} again"
        );
    }
    let mut m = f.members(&admins);
    m.sort();
    let mut want = vec![alice.clone(), bob.clone(), carol.clone(), other.clone()];
    want.sort();
    assert_eq!(m, want);

    // Listed over several pages, under the names the broker used; a member
    // jitgate never saw is reported by user principal name.
    let listed = p.list(&[member("x", &admins).target]).await.unwrap();
    let mut want = vec![
        carol.as_str(),
        "alice@contoso.com",
        "bob@fabrikam.com",
        "dave@contoso.com",
    ];
    want.sort_unstable();
    assert_eq!(principals(&listed), want);

    assert!(p.holds(&member("alice@contoso.com", &admins)).await.unwrap());
    for who in ["alice@contoso.com", "bob@fabrikam.com", carol.as_str()] {
        let e = member(who, &admins);
        assert_eq!(p.remove(&e).await.unwrap(), Effect::Changed, "{who}");
        assert_eq!(p.remove(&e).await.unwrap(), Effect::Unchanged, "{who} again");
    }
    assert_eq!(f.members(&admins), vec![other]);
    assert!(!p.holds(&member("alice@contoso.com", &admins)).await.unwrap());
}

#[tokio::test]
async fn unknown_users_groups_and_roles_fail_naming_them() {
    let f = fake().await;
    let group = f.add_group("Cloud admins");
    f.add_user("alice@contoso.com", None);
    let mut s = settings(&f, 100);
    s.replication_wait = Duration::from_millis(300);
    let p = Entra::connect(config(), s).await.unwrap();

    let e = p
        .apply_for(&member("nobody@contoso.com", &group), &window(60))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FailureKind::NotFound);
    assert!(
        e.reason().contains("nobody@contoso.com") && e.reason().contains(TENANT),
        "{e}"
    );

    let missing = "99999999-9999-9999-9999-999999999999";
    let e = p
        .apply_for(&member("alice@contoso.com", missing), &window(60))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FailureKind::NotFound);
    assert!(
        e.reason().contains(missing) && e.reason().contains("Request_ResourceNotFound"),
        "{e}"
    );

    let e = p
        .apply_for(&role("alice@contoso.com"), &window(60))
        .await
        .unwrap_err();
    assert!(!e.retryable());
    assert!(e.reason().contains("RoleDefinitionDoesNotExist"), "{e}");

    let other = Entitlement {
        configuration: ConfigId::new("elsewhere").unwrap(),
        ..member("alice@contoso.com", &group)
    };
    assert!(p
        .apply_for(&other, &window(60))
        .await
        .unwrap_err()
        .reason()
        .contains("elsewhere"));

    // Revoking what an unknown user would hold changes nothing.
    assert_eq!(
        p.remove(&member("nobody@contoso.com", &group)).await.unwrap(),
        Effect::Unchanged
    );
}

#[tokio::test]
async fn a_directory_role_is_assigned_until_the_window_ends_and_extended_and_removed() {
    let f = fake().await;
    f.add_role_definition(GLOBAL_READER);
    let alice = f.add_user("alice@contoso.com", None);
    let p = entra(&f).await;
    let e = role("alice@contoso.com");

    let w = window(600);
    assert_eq!(p.apply_for(&e, &w).await.unwrap(), Effect::Changed);
    let a = f.role_assignments();
    assert_eq!(a.len(), 1);
    assert_eq!(
        (
            a[0].principal_id.as_str(),
            a[0].resource.as_str(),
            a[0].scope.as_str()
        ),
        (alice.as_str(), GLOBAL_READER, "/")
    );
    let end = a[0].end.expect("an expiration");
    assert!(
        end >= w.until && end - w.until < chrono::Duration::seconds(1),
        "{end} vs {}",
        w.until
    );
    assert_eq!(p.apply_for(&e, &w).await.unwrap(), Effect::Unchanged);
    assert_eq!(
        p.apply_for(&e, &window(300)).await.unwrap(),
        Effect::Unchanged,
        "a shorter window keeps the end"
    );

    // An extension moves the end.
    let longer = window(1200);
    assert_eq!(p.apply_for(&e, &longer).await.unwrap(), Effect::Changed);
    assert!(f.role_assignments()[0].end.unwrap() >= longer.until);

    assert_eq!(
        principals(&p.list(std::slice::from_ref(&e.target)).await.unwrap()),
        vec!["alice@contoso.com"]
    );
    assert_eq!(p.remove(&e).await.unwrap(), Effect::Changed);
    assert_eq!(p.remove(&e).await.unwrap(), Effect::Unchanged);
    assert!(f.role_assignments().is_empty());
    assert!(p.list(std::slice::from_ref(&e.target)).await.unwrap().is_empty());

    // Entra ends it by itself when the window ends, with no revoke: the
    // assignment ends at the window's end (whole seconds, rounded up).
    let short = window(2);
    assert_eq!(p.apply_for(&e, &short).await.unwrap(), Effect::Changed);
    let assigned = f.role_assignments();
    let end = assigned[0].end.expect("an assignment with an end");
    assert!(
        end >= short.until && end < short.until + chrono::Duration::seconds(1),
        "{end}"
    );
    support::past(end).await;
    assert!(f.role_assignments().is_empty(), "expired in Entra");
    assert!(p.list(std::slice::from_ref(&e.target)).await.unwrap().is_empty());
}

#[tokio::test]
async fn pim_for_groups_assigns_membership_with_an_expiration() {
    let f = fake().await;
    let alice = f.add_user("alice@contoso.com", None);
    let group = f.add_group("PIM: break-glass admins");
    let p = entra(&f).await;
    let e = pim("alice@contoso.com", &group);
    let w = window(900);
    assert_eq!(p.apply_for(&e, &w).await.unwrap(), Effect::Changed);
    assert_eq!(p.apply_for(&e, &w).await.unwrap(), Effect::Unchanged);
    let a = f.pim_group_assignments();
    assert_eq!(a.len(), 1);
    assert_eq!(
        (
            a[0].principal_id.as_str(),
            a[0].resource.as_str(),
            a[0].scope.as_str()
        ),
        (alice.as_str(), group.as_str(), "member")
    );
    assert!(a[0].end.unwrap() >= w.until);
    // PIM makes her a member of the group while it lasts.
    let members = p.list(&[member("x", &group).target]).await.unwrap();
    assert_eq!(principals(&members), vec!["alice@contoso.com"]);
    assert_eq!(
        principals(&p.list(std::slice::from_ref(&e.target)).await.unwrap()),
        vec!["alice@contoso.com"]
    );
    assert_eq!(p.remove(&e).await.unwrap(), Effect::Changed);
    assert_eq!(p.remove(&e).await.unwrap(), Effect::Unchanged);
    assert!(f.pim_group_assignments().is_empty());
}

#[tokio::test]
async fn throttling_is_honoured_with_retry_after_and_server_errors_are_retried() {
    let f = fake().await;
    f.add_user("alice@contoso.com", None);
    let group = f.add_group("Cloud admins");
    let p = entra(&f).await;
    let e = member("alice@contoso.com", &group);

    // Three 429s asking for 1 s each: the write waits them out.
    f.set(|s| {
        s.throttle_next = 3;
        s.retry_after_secs = 1;
    });
    let started = std::time::Instant::now();
    assert_eq!(p.apply_for(&e, &window(60)).await.unwrap(), Effect::Changed);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "Retry-After honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(f.stats().throttled, 3);
    assert_eq!(p.budget().stats().throttled, 3);

    // More 429s than attempts: a retryable error carrying the pause.
    f.set(|s| s.throttle_next = 10);
    let err = p.remove(&e).await.unwrap_err();
    assert!(
        err.kind() == FailureKind::Throttled && err.retry_after().unwrap() >= Duration::from_secs(1),
        "{err:?}"
    );
    assert!(err.reason().contains("TooManyRequests"), "{err}");
    f.set(|s| s.throttle_next = 0);

    // Two 503s, then success.
    f.set(|s| s.fail_next = 2);
    assert_eq!(p.remove(&e).await.unwrap(), Effect::Changed);
    assert_eq!(f.stats().server_errors, 2);
    // More than the attempts: retryable.
    f.set(|s| s.fail_next = 10);
    let err = p.apply_for(&e, &window(60)).await.unwrap_err();
    assert!(
        err.kind() == FailureKind::Transport && err.reason().contains("serviceNotAvailable"),
        "{err}"
    );
    f.set(|s| s.fail_next = 0);
}

#[tokio::test]
async fn objects_still_replicating_are_waited_for_within_a_bound() {
    let f = fake().await;
    f.add_role_definition(GLOBAL_READER);
    f.set(|s| s.replication_delay = Duration::from_millis(1500));
    let alice = f.add_user("alice@contoso.com", None);
    let group = f.add_group("Just created");
    let p = entra(&f).await;
    let started = std::time::Instant::now();
    assert_eq!(
        p.apply_for(&member("alice@contoso.com", &group), &window(60))
            .await
            .unwrap(),
        Effect::Changed
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(f.members(&group), vec![alice]);

    // Longer than the agent waits: a clear error.
    f.set(|s| s.replication_delay = Duration::from_secs(30));
    f.add_user("late@contoso.com", None);
    let mut s = settings(&f, 100);
    s.replication_wait = Duration::from_millis(500);
    let p = Entra::connect(config(), s).await.unwrap();
    let e = p
        .apply_for(&member("late@contoso.com", &group), &window(60))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FailureKind::NotFound);
    assert!(
        e.reason().contains("late@contoso.com") && e.reason().contains("replication"),
        "{e}"
    );
}

#[tokio::test]
async fn tokens_are_refreshed_by_the_credential_and_a_refused_token_is_a_retryable_error() {
    let f = fake().await;
    // Tokens live 301 s; the credential renews them 300 s before expiry,
    // so every call after the first second needs a new one.
    f.set(|s| s.token_lifetime = Duration::from_secs(301));
    f.add_user("alice@contoso.com", None);
    let group = f.add_group("Cloud admins");
    let p = entra(&f).await;
    let e = member("alice@contoso.com", &group);
    for _ in 0..3 {
        p.apply_for(&e, &window(60)).await.unwrap();
        p.remove(&e).await.unwrap();
        // The token these calls used is due for renewal a second after it
        // was issued, before now.
        support::past(Utc::now() + chrono::Duration::seconds(1)).await;
    }
    assert!(f.token_requests() >= 3, "renewed: {}", f.token_requests());
    assert_eq!(f.stats().unauthorized, 0);

    // Graph stops taking a token the credential still holds.
    f.set(|s| s.token_lifetime = Duration::from_secs(3599));
    p.apply_for(&e, &window(60)).await.unwrap();
    f.revoke_tokens();
    let err = p.remove(&e).await.unwrap_err();
    assert!(
        err.kind() == FailureKind::Unauthorised
            && err.retryable()
            && err.reason().contains("InvalidAuthenticationToken"),
        "{err}"
    );
}

#[tokio::test]
async fn a_grant_can_ask_provisioning_to_run_at_once_and_its_failure_does_not_fail_the_grant() {
    use jitgate_shared::v1::signing::ProvisionOnDemand;
    let f = fake().await;
    let alice = f.add_user("alice@contoso.com", None);
    let group = f.add_group("aws-admins");
    f.add_provisioning_job("sp-1", "job-1");
    let p = entra(&f).await;
    let job = |job_id: &str| Window {
        provision_on_demand: Some(ProvisionOnDemand {
            service_principal_id: "sp-1".into(),
            job_id: job_id.into(),
            rule_id: "rule-1".into(),
        }),
        ..window(600)
    };
    let e = member("alice@contoso.com", &group);
    assert_eq!(p.apply_for(&e, &job("job-1")).await.unwrap(), Effect::Changed);
    let asked = f.provision_requests("sp-1", "job-1");
    assert_eq!(asked.len(), 1);
    assert_eq!(
        (asked[0].group.clone(), asked[0].members.clone()),
        (group.clone(), vec![alice])
    );
    // An unknown job: logged, the membership stands.
    p.remove(&e).await.unwrap();
    assert_eq!(
        p.apply_for(&e, &job("no-such-job")).await.unwrap(),
        Effect::Changed
    );
    assert_eq!(f.members(&group).len(), 1);
}

#[tokio::test]
async fn a_revoke_can_end_the_users_sign_in_sessions() {
    let f = fake().await;
    let alice = f.add_user("alice@contoso.com", None);
    let group = f.add_group("Cloud admins");
    let p = entra(&f).await;
    let e = member("alice@contoso.com", &group);
    p.apply_for(&e, &window(60)).await.unwrap();
    p.remove(&e).await.unwrap();
    assert_eq!(f.sessions_revoked(&alice), 0, "not unless asked");
    p.apply_for(&e, &window(60)).await.unwrap();
    let ending = Ending {
        end_sign_in_sessions: true,
    };
    assert_eq!(p.remove_for(&e, &ending).await.unwrap(), Effect::Changed);
    assert_eq!(f.sessions_revoked(&alice), 1);
    assert!(p.capabilities().contains("end_sign_in_sessions"));
}

#[tokio::test]
async fn bad_credentials_stop_the_provider_at_start_up_naming_app_and_tenant() {
    let f = fake().await;
    let mut s = settings(&f, 100);
    s.credential.auth = EntraAuth::ClientSecret {
        client_id: CLIENT.into(),
        secret: "wrong".into(),
    };
    let e = Entra::connect(config(), s).await.unwrap_err();
    assert_eq!(e.kind(), FailureKind::Unauthorised);
    assert!(
        e.reason().contains("AADSTS7000215") && e.reason().contains(CLIENT) && e.reason().contains(TENANT),
        "{e}"
    );
    assert!(!e.reason().contains("wrong"), "{e}");
}
