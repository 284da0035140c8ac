//! Federated-directory chains through the API: every chain error reaches
//! the requester with the path walked, configuration changes that would
//! form a cycle or orphan a resource in use are refused, a federated grant
//! is applied in the directory by its agent and not called effective
//! before it is, and `explain` shows the plan without acting.

use std::time::Duration;

use jitgate_shared::v1::api::{Configuration, IdentityMode};
use jitgate_shared::v1::{ConfigId, ResourceId, Target, UserId};
use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::POLICY;
use reqwest::StatusCode;

use crate::agents::{applied, FAST};
use crate::support::{ask, status};

/// `aws-fed` (Identity Center) trusts `entra`; `aws-off` trusts a disabled
/// directory.
pub(crate) fn catalog() -> String {
    String::from(
        r#"
[[configurations]]
id = "aws-fed"
kind = "aws_identity_center"
identity_mode = { mode = "federated", directory = "entra" }

[[configurations]]
id = "entra"
kind = "entra_id"
identity_mode = { mode = "direct" }

[[configurations]]
id = "entra2"
kind = "entra_id"
identity_mode = { mode = "direct" }

[[configurations]]
id = "entra-off"
kind = "entra_id"
identity_mode = { mode = "direct" }
enabled = false

[[configurations]]
id = "aws-off"
kind = "aws_identity_center"
identity_mode = { mode = "federated", directory = "entra-off" }

[[resources]]
id = "fed-admin"
configuration = "aws-fed"
group = "auto"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "AdminAccess" }
realized_by = { entra = { kind = "entra_group_membership", group_id = "aws-admins" } }

[[resources]]
id = "fed-unmapped"
configuration = "aws-fed"
group = "auto"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "ReadOnly" }

[[resources]]
id = "off-admin"
configuration = "aws-off"
group = "auto"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "AdminAccess" }
realized_by = { entra-off = { kind = "entra_group_membership", group_id = "g" } }

[[users]]
id = "alice"
email = "alice@example.com"
roles = ["requester"]
groups = ["developers"]

[[users]]
id = "admin"
roles = ["admin", "auditor"]
"#,
    )
}

pub(crate) const WORKFLOWS: &str = r#"
[defaults]
max_duration = "1h"
default_duration = "10m"

[group.auto]
auto_approve = true
approvals_required = 0
"#;

pub(crate) async fn broker() -> TestBroker {
    TestBroker::start_with(
        &catalog(),
        &[("access.cedar", POLICY), ("workflows.toml", WORKFLOWS)],
        FAST,
    )
    .await
}

fn config(id: &str, directory: Option<&str>) -> Configuration {
    Configuration {
        id: ConfigId::new(id).unwrap(),
        kind: jitgate_shared::v1::api::ConfigKind::EntraId,
        display_name: String::new(),
        tenant: Default::default(),
        identity_mode: match directory {
            None => IdentityMode::Direct,
            Some(d) => IdentityMode::Federated {
                directory: ConfigId::new(d).unwrap(),
            },
        },
        enabled: true,
    }
}

#[tokio::test]
async fn every_chain_error_reaches_the_api_naming_the_path() {
    let b = broker().await;
    let alice = b.client("alice");
    for (resource, want) in [
        (
            "fed-admin",
            "chain `aws-fed` → `entra`: no enrolled agent for `entra`, where the elevation is applied",
        ),
        (
            "fed-unmapped",
            "chain `aws-fed` → `entra`: resource `fed-unmapped` has no mapping in directory `entra` (set realized_by.entra)",
        ),
        (
            "off-admin",
            "chain `aws-off` → `entra-off`: configuration `entra-off` is disabled",
        ),
    ] {
        let (code, message) = status(alice.create_request(&ask(resource, 600)).await);
        assert_eq!(code, StatusCode::CONFLICT, "{resource}: {message}");
        assert!(message.contains(want), "{resource}: {message}");
    }

    let admin = b.client("admin");
    // A change that would close a cycle is refused with the path.
    let (code, message) = status(admin.put_configuration(&config("entra", Some("aws-fed"))).await);
    assert_eq!(code, StatusCode::CONFLICT, "{message}");
    assert!(message.contains("comes round again"), "{message}");
    assert!(
        message.contains("`aws-fed`") && message.contains("`entra`"),
        "{message}"
    );
    // A directory that does not exist.
    let (code, message) = status(admin.put_configuration(&config("lost", Some("nowhere"))).await);
    assert_eq!(code, StatusCode::BAD_REQUEST, "{message}");
    assert!(message.contains("`nowhere`, which does not exist"), "{message}");
    // Eight links are fine; a ninth is refused.
    admin.put_configuration(&config("d9", None)).await.unwrap();
    for i in (1..9).rev() {
        let next = format!("d{}", i + 1);
        admin
            .put_configuration(&config(&format!("d{i}"), Some(&next)))
            .await
            .unwrap();
    }
    let (code, message) = status(admin.put_configuration(&config("d0", Some("d1"))).await);
    assert_eq!(code, StatusCode::CONFLICT, "{message}");
    assert!(
        message.contains(
            "chain `d0` → `d1` → `d2` → `d3` → `d4` → `d5` → `d6` → `d7` → `d8`: more than 8 directory links"
        ),
        "{message}"
    );
    // explain reports the same errors.
    let (code, message) = status(
        admin
            .explain(
                &ResourceId::new("fed-unmapped").unwrap(),
                &UserId::new("alice").unwrap(),
            )
            .await,
    );
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(message.contains("no mapping in directory `entra`"), "{message}");
}

#[tokio::test]
async fn a_federated_grant_is_applied_in_the_directory_and_not_called_effective_before_it_is() {
    let b = broker().await;
    let mut agent = TestAgent::enroll(&b, "entra", None).await;
    agent.start(&[]).await;
    agent.connected().await;

    // explain: chain, plan and the agent that will act; nothing is done.
    let out = b.cli(
        "admin",
        &["admin", "explain", "--resource", "fed-admin", "--user", "alice"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("chain    aws-fed → entra"), "{text}");
    assert!(
        text.contains("apply    Entra group aws-admins for alice@example.com in entra (agent "),
        "{text}"
    );
    assert!(agent.tenant().is_empty(), "explain acts on nothing");

    let alice = b.client("alice");
    let id = alice
        .create_request(&ask("fed-admin", 600))
        .await
        .unwrap()
        .grant
        .unwrap();
    let g = applied(&b, id).await;
    assert_eq!(g.entitlement.configuration.as_str(), "entra");
    assert_eq!(
        g.chain.iter().map(ConfigId::as_str).collect::<Vec<_>>(),
        vec!["aws-fed", "entra"]
    );
    let held: Vec<String> = agent.tenant().iter().map(|e| e.target.describe()).collect();
    assert_eq!(held, vec!["Entra group aws-admins"]);
    // Applied in the directory, but nothing downstream confirmed it yet.
    assert!(g.effective_at.is_none(), "{g:?}");
    let out = b.cli("alice", &["grants"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("awaiting directory sync"), "{table}");
    assert!(!table.contains("in effect"), "{table}");

    // With that grant active, pointing aws-fed at a directory with no
    // mapping for fed-admin would orphan it: refused, naming the path.
    let mut moved = config("aws-fed", Some("entra2"));
    moved.kind = jitgate_shared::v1::api::ConfigKind::AwsIdentityCenter;
    let (code, message) = status(b.client("admin").put_configuration(&moved).await);
    assert_eq!(code, StatusCode::CONFLICT, "{message}");
    assert!(
        message.contains("would orphan resource `fed-admin`")
            && message.contains("chain `aws-fed` → `entra2`"),
        "{message}"
    );

    // The resource is remapped meanwhile; the revoke still undoes what was
    // applied, as the grant recorded it.
    let admin = b.client("admin");
    let mut remapped = admin
        .list_resources()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id.as_str() == "fed-admin")
        .unwrap();
    remapped.realized_by.insert(
        ConfigId::new("entra").unwrap(),
        Target::EntraGroupMembership {
            group_id: "another-group".into(),
        },
    );
    admin.put_resource(&remapped).await.unwrap();
    // A mapping of the wrong kind is refused, naming it.
    let mut wrong = remapped.clone();
    wrong.realized_by.insert(
        ConfigId::new("entra").unwrap(),
        Target::AwsIamGroupMembership {
            group_name: "ops".into(),
        },
    );
    let (code, message) = status(admin.put_resource(&wrong).await);
    assert_eq!(code, StatusCode::BAD_REQUEST, "{message}");
    assert!(
        message.contains("aws_iam_group_membership") && message.contains("entra_id"),
        "{message}"
    );

    alice.revoke(id, None).await.unwrap();
    crate::agents::removed(&b, id, Duration::from_secs(10)).await;
    assert!(agent.tenant().is_empty());
}

/// Identity Center federated to Entra, and a direct IAM tenant, each with
/// its own agent against its own peer (the Graph fake, moto).
fn two_tenants_catalog(entra_group: &str) -> String {
    format!(
        r#"
[[configurations]]
id = "entra"
kind = "entra_id"
identity_mode = {{ mode = "direct" }}

[[configurations]]
id = "aws-fed"
kind = "aws_identity_center"
identity_mode = {{ mode = "federated", directory = "entra" }}
tenant = {{ provisioning_service_principal_id = "sp-aws", provisioning_job_id = "aws.job-1", provisioning_rule_id = "rule-1" }}

[[configurations]]
id = "iam"
kind = "aws_iam"
identity_mode = {{ mode = "direct" }}

[[resources]]
id = "fed-admin"
configuration = "aws-fed"
group = "auto"
target = {{ kind = "aws_account_assignment", account_id = "{ACCOUNT}", permission_set = "AdminAccess" }}
realized_by = {{ entra = {{ kind = "entra_group_membership", group_id = "{entra_group}" }} }}

[[resources]]
id = "iam-ops"
configuration = "iam"
group = "auto"
target = {{ kind = "aws_iam_group_membership", group_name = "ops" }}

[[users]]
id = "alice"
email = "alice@example.com"
roles = ["requester"]
groups = ["developers"]

[[users]]
id = "admin"
roles = ["admin", "auditor"]
"#
    )
}

const ACCOUNT: &str = "111122223333";

async fn grant_view(b: &TestBroker, id: jitgate_shared::v1::GrantId) -> jitgate_shared::v1::api::GrantView {
    b.client("admin").grant(id).await.unwrap()
}

#[tokio::test]
async fn identity_center_federated_to_entra_is_elevated_in_entra_and_confirmed_in_aws() {
    use aws_sdk_ssoadmin::types::{PrincipalType, TargetType};
    use jitgate_tests::moto::{self, Moto};

    use crate::entra_graph::{fake, CLIENT, SECRET};
    use crate::support::eventually;

    // Entra: alice and the group Entra provisions to AWS.
    let f = fake().await;
    let entra_alice = f.add_user("alice@example.com", Some("alice@example.com"));
    let entra_group = f.add_group("aws-admins");
    f.add_provisioning_job("sp-aws", "aws.job-1");
    // AWS: Identity Center with alice and the provisioned group, which holds
    // AdminAccess on the account; IAM with alice and the ops group.
    let m = Moto::start().await;
    let ps = m.permission_set("AdminAccess").await;
    let aws_alice = m.user("alice", "alice@example.com").await;
    let aws_group = m.group("aws-admins").await;
    let (instance, _) = m.instance().await;
    m.admin()
        .create_account_assignment()
        .instance_arn(instance)
        .target_id(ACCOUNT)
        .target_type(TargetType::AwsAccount)
        .permission_set_arn(&ps)
        .principal_type(PrincipalType::Group)
        .principal_id(&aws_group)
        .send()
        .await
        .unwrap();
    let iam = m.iam();
    iam.create_user()
        .user_name("alice@example.com")
        .send()
        .await
        .unwrap();
    iam.create_group().group_name("ops").send().await.unwrap();

    let b = TestBroker::start_with(
        &two_tenants_catalog(&entra_group),
        &[("access.cedar", POLICY), ("workflows.toml", WORKFLOWS)],
        FAST,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let secret = secret.display().to_string();
    let mut entra_agent = TestAgent::enroll(&b, "entra", None).await;
    let args = crate::entra::agent_args(
        &f,
        dir.path(),
        &["--entra-client-id", CLIENT, "--entra-client-secret-file", &secret],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    entra_agent.start_provider(&args, &[]).await;
    let mut aws_agent = TestAgent::enroll(&b, "aws-fed", None).await;
    aws_agent
        .start_provider(
            &[
                "--provider",
                "aws-identity-center",
                "--aws-endpoint-url",
                &m.url,
                "--aws-sdk-max-attempts",
                "1",
            ],
            moto::ENV,
        )
        .await;
    let mut iam_agent = TestAgent::enroll(&b, "iam", None).await;
    iam_agent
        .start_provider(
            &[
                "--provider",
                "aws-iam",
                "--aws-endpoint-url",
                &m.url,
                "--aws-sdk-max-attempts",
                "1",
            ],
            moto::ENV,
        )
        .await;
    entra_agent.connected().await;
    aws_agent.connected().await;
    iam_agent.connected().await;

    let alice = b.client("alice");
    let id = alice
        .create_request(&ask("fed-admin", 8))
        .await
        .unwrap()
        .grant
        .unwrap();
    let g = applied(&b, id).await;
    assert_eq!(
        f.members(&entra_group),
        vec![entra_alice.clone()],
        "added in Entra"
    );
    assert!(
        g.effective_at.is_none(),
        "not in effect in AWS before the directory syncs"
    );
    // The Entra agent asked provisioning to run at once for her membership.
    let asked = eventually(Duration::from_secs(5), "provisioning on demand", || async {
        let r = f.provision_requests("sp-aws", "aws.job-1");
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(
        (
            asked[0].rule_id.as_str(),
            asked[0].group.as_str(),
            asked[0].members.clone()
        ),
        ("rule-1", entra_group.as_str(), vec![entra_alice.clone()])
    );
    // The AWS agent is asked, and answers, twice: still not in effect.
    let answers = || async { b.metric("jitgate_downstream_answers_total").await.unwrap_or(0.0) };
    let before = answers().await;
    eventually(Duration::from_secs(10), "two downstream answers", || async {
        (answers().await >= before + 2.0).then_some(())
    })
    .await;
    assert!(grant_view(&b, id).await.effective_at.is_none());

    // Entra's provisioning runs: the harness mirrors the membership.
    let membership = m.add_member(&aws_group, &aws_alice).await;
    let g = eventually(Duration::from_secs(10), "confirmed in effect in AWS", || async {
        let g = grant_view(&b, id).await;
        g.effective_at.is_some().then_some(g)
    })
    .await;
    assert!(g.effective_at >= g.applied_at);

    // At expiry the Entra agent removes the membership; AWS still shows it
    // until provisioning runs again.
    let g = crate::agents::removed(&b, id, Duration::from_secs(15)).await;
    assert!(f.members(&entra_group).is_empty(), "removed in Entra");
    let before = answers().await;
    eventually(Duration::from_secs(10), "two downstream answers", || async {
        (answers().await >= before + 2.0).then_some(())
    })
    .await;
    assert!(grant_view(&b, id).await.removal_confirmed_at.is_none());
    let out = b.cli("alice", &["grants"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("removed in entra, awaiting directory sync"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    m.remove_member(&membership).await;
    let g2 = eventually(Duration::from_secs(10), "confirmed gone in AWS", || async {
        let g = grant_view(&b, id).await;
        g.removal_confirmed_at.is_some().then_some(g)
    })
    .await;
    assert!(g2.removal_confirmed_at >= g.removed_at);

    // The same run: a direct IAM resource.
    let id = alice
        .create_request(&ask("iam-ops", 3))
        .await
        .unwrap()
        .grant
        .unwrap();
    let g = applied(&b, id).await;
    assert_eq!(g.effective_at, g.applied_at, "direct: in effect when applied");
    let members = iam.get_group().group_name("ops").send().await.unwrap();
    assert_eq!(members.users().len(), 1);
    crate::agents::removed(&b, id, Duration::from_secs(10)).await;
    let members = iam.get_group().group_name("ops").send().await.unwrap();
    assert!(members.users().is_empty());
}
