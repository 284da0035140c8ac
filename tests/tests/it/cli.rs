//! The `jitgate` CLI, as a person uses it.

use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};

use crate::support::said as text;

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
    // The approver sees whom the grant names in the cloud.
    let out = b.cli("bob", &["show", &id]);
    assert!(
        text(&out).contains("grants to: alice@example.com"),
        "{}",
        text(&out)
    );
    let out = b.cli("bob", &["approve", &id, "--comment", "ok"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("active"), "{}", text(&out));
    let out = b.cli("alice", &["grants"]);
    assert!(text(&out).contains("DevAdmin"), "{}", text(&out));

    // `show` takes either id; the broker says which it names.
    let out = b.cli("alice", &["--json", "grants"]);
    let grants: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let grant = grants["items"][0]["id"].as_str().unwrap().to_owned();
    let out = b.cli("alice", &["--json", "show", &grant]);
    assert!(out.status.success(), "{}", text(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (shown["kind"].as_str(), shown["item"]["id"].as_str()),
        (Some("grant"), Some(grant.as_str()))
    );
    let out = b.cli("alice", &["--json", "show", &id]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["kind"], "request", "{shown}");
    // An id that names nothing (or nothing the caller may see: the
    // service's tests) is said so; one that is not an id never leaves.
    let out = b.cli("alice", &["show", "01900000-0000-7000-8000-000000000000"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("request or grant"), "{}", text(&out));
    let out = b.cli("alice", &["show", "../admin/users"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("invalid value"), "{}", text(&out));

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

#[tokio::test]
async fn admins_list_and_revoke_tokens_and_disable_accounts_from_the_cli() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    // Only admins and auditors see the accounts.
    let (code, msg) = crate::support::status(b.client("alice").users().await);
    assert_eq!(code, reqwest::StatusCode::FORBIDDEN, "{msg}");
    let out = b.cli("admin", &["admin", "users"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("alice@example.com"), "{}", text(&out));

    let admin = b.client("admin");
    let extra = admin.issue_token(&"bob".parse().unwrap()).await.unwrap();
    let out = b.cli("admin", &["--json", "admin", "tokens", "list", "--user", "bob"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        !text(&out).contains(&extra.token),
        "tokens themselves are never shown"
    );
    let id: String = {
        use sha2::Digest;
        sha2::Sha256::digest(extra.token.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert!(listed.iter().any(|t| t["id"] == id.as_str()), "{listed:?}");

    let out = b.cli("admin", &["admin", "tokens", "revoke", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let (code, _) = crate::support::status(b.client("bob").with_token(&extra.token).whoami().await);
    assert_eq!(
        code,
        reqwest::StatusCode::UNAUTHORIZED,
        "the revoked token stops at once"
    );
    assert!(
        b.client("bob").whoami().await.is_ok(),
        "bob's other token still works"
    );
    let out = b.cli("admin", &["admin", "tokens", "revoke", "not-a-token-id"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is not a token id"), "{}", text(&out));

    let out = b.cli("admin", &["admin", "users", "disable", "dave"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("disabled"), "{}", text(&out));
    let (code, _) = crate::support::status(b.client("dave").whoami().await);
    assert_eq!(code, reqwest::StatusCode::UNAUTHORIZED);
}
