//! Federated-directory chains through the API: every chain error reaches
//! the requester with the path walked, configuration changes that would
//! form a cycle or orphan a resource in use are refused, a federated grant
//! is applied in the directory by its agent and not called effective
//! before it is, and `explain` shows the plan without acting.

use std::time::Duration;

use jitgate_shared::v1::api::{Configuration, IdentityMode};
use jitgate_shared::v1::{ConfigId, ResourceId, UserId};
use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::POLICY;
use reqwest::StatusCode;

use crate::agents::{applied, FAST};
use crate::support::{ask, status};

/// `aws-fed` (Identity Center) trusts `entra`; `aws-off` trusts a disabled
/// directory.
fn catalog() -> String {
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

const WORKFLOWS: &str = r#"
[defaults]
max_duration = "1h"
default_duration = "10m"

[group.auto]
auto_approve = true
approvals_required = 0
"#;

async fn broker() -> TestBroker {
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

    alice.revoke(id, None).await.unwrap();
    crate::agents::removed(&b, id, Duration::from_secs(10)).await;
    assert!(agent.tenant().is_empty());
}
