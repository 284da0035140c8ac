//! Policy reload: an invalid set is refused and the old one stays in force.

use std::time::Duration;

use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG, POLICY};
use reqwest::StatusCode;

use crate::support::{ask, eventually, status};

#[tokio::test]
async fn reload_keeps_the_old_set_when_the_new_one_is_invalid() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let admin = b.client("admin");
    b.write_policy(
        "access.cedar",
        &format!("{POLICY}\npermit (principal, action == Jitgate::Action::\"request\", resource == Jitgate::Resource::\"aws:prod\");\n"),
    );
    let (code, msg) = status(admin.reload_policies().await);
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(msg.contains("access.cedar line"), "{msg}");
    assert!(msg.contains("unknown resource `aws:prod`"), "{msg}");
    assert!(msg.contains("`dev-admin`"), "known names listed: {msg}");
    // Old policies still decide.
    b.client("alice")
        .create_request(&ask("dev-admin", 60))
        .await
        .unwrap();

    // A valid set that stops developers requesting takes effect at once.
    b.write_policy(
        "access.cedar",
        "permit (principal in Jitgate::Group::\"sre\", action, resource);\n",
    );
    let status_now = admin.reload_policies().await.unwrap();
    assert_eq!(status_now.policies, 1);
    assert!(status_now.last_error.is_none());
    let (code, _) = status(b.client("alice").create_request(&ask("dev-admin", 60)).await);
    assert_eq!(code, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sighup_reloads_policies() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    b.write_policy(
        "access.cedar",
        "permit (principal in Jitgate::Group::\"nobody\", action, resource);\n",
    );
    b.signal("HUP");
    let alice = b.client("alice");
    eventually(Duration::from_secs(5), "SIGHUP reload", || async {
        alice
            .create_request(&ask("dev-admin", 60))
            .await
            .err()
            .filter(|e| e.status() == Some(StatusCode::FORBIDDEN))
    })
    .await;
}

#[tokio::test]
async fn the_broker_refuses_to_start_on_invalid_policies_and_policy_check_agrees() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let dir = b.path("bad-policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.cedar"),
        "permit (principal, action == Jitgate::Action::\"request\",\n  resource in Jitgate::ResourceGroup::\"staging\");\n",
    )
    .unwrap();
    std::fs::write(dir.join("workflows.toml"), "[defaults]\nmax_duraton = \"1h\"\n").unwrap();
    let out = std::process::Command::new(jitgate_tests::bin("jitgate-broker"))
        .args(["policy", "check"])
        .arg(&dir)
        .arg("--catalog")
        .arg(b.path("catalog.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "a.cedar line 2: unknown resource group `staging`; known: `auto`, `dev`, `prod`, `quick`"
        ),
        "{err}"
    );
    assert!(err.contains("workflows.toml line 2"), "{err}");
    assert!(err.contains("max_duraton"), "{err}");
    let ok = std::process::Command::new(jitgate_tests::bin("jitgate-broker"))
        .args(["policy", "check"])
        .arg(b.path("policies"))
        .arg("--catalog")
        .arg(b.path("catalog.toml"))
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn the_shipped_policies_check_without_a_catalogue() {
    let out = std::process::Command::new(jitgate_tests::bin("jitgate-broker"))
        .args(["policy", "check"])
        .arg(jitgate_tests::workspace().join("policies"))
        .output()
        .unwrap();
    let said = crate::support::said(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("names not checked"),
        "says what it did not check: {said}"
    );
}
