//! The `jitgate` CLI, as a person uses it.

use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn request_approve_and_list_from_the_cli() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let out = b.cli("alice", &["whoami"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("alice"), "{}", text(&out));

    let out = b.cli(
        "alice",
        &[
            "--json",
            "request",
            "dev-admin",
            "--duration",
            "15m",
            "-j",
            "deploy fix",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["duration_seconds"], 900);

    let out = b.cli("bob", &["list", "--state", "pending"]);
    assert!(text(&out).contains(&id), "{}", text(&out));
    let out = b.cli("bob", &["approve", &id, "--comment", "ok"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("active"), "{}", text(&out));
    let out = b.cli("alice", &["grants"]);
    assert!(text(&out).contains("DevAdmin"), "{}", text(&out));

    // Admins make join tokens and see agents.
    let out = b.cli("admin", &["admin", "join-token", "aws-test", "--ttl", "10m"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("jgj_") && text(&out).contains("fingerprint"),
        "{}",
        text(&out)
    );
    let out = b.cli("admin", &["--json", "admin", "agents"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    let out = b.cli("alice", &["admin", "join-token", "aws-test"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("`admin` role"), "{}", text(&out));

    // Errors name the input and exit non-zero.
    let out = b.cli("alice", &["request", "dev-admin", "--duration", "soon"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("`soon` is not a duration"), "{}", text(&out));
    let out = b.cli("alice", &["approve", &id]);
    assert!(!out.status.success());
    assert!(text(&out).contains("error:"), "{}", text(&out));
}
