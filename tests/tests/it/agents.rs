//! Broker and gateway agents together: real processes, real mTLS on
//! loopback, the sandbox tenant in a file.

use std::time::{Duration, Instant};

use jitgate_shared::v1::api::GrantView;
use jitgate_shared::v1::GrantId;
use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};

use crate::support::{eventually, outbox, request};

/// Flags for a broker whose agents notice trouble quickly.
pub const FAST: &[&str] = &["--agent-heartbeat", "1s"];

pub async fn grant_of(b: &TestBroker, id: GrantId) -> GrantView {
    b.client("admin").grant(id).await.unwrap()
}

/// Waits until an agent confirmed the grant applied.
pub async fn applied(b: &TestBroker, id: GrantId) -> GrantView {
    applied_within(b, id, Duration::from_secs(10)).await
}

pub async fn applied_within(b: &TestBroker, id: GrantId, limit: Duration) -> GrantView {
    eventually(limit, "grant applied by the agent", || async {
        let g = grant_of(b, id).await;
        g.applied_at.is_some().then_some(g)
    })
    .await
}

pub async fn removed(b: &TestBroker, id: GrantId, within: Duration) -> GrantView {
    eventually(within, "entitlement removal confirmed", || async {
        let g = grant_of(b, id).await;
        g.removed_at.is_some().then_some(g)
    })
    .await
}

#[tokio::test]
async fn an_agent_applies_a_grant_and_it_is_revoked_when_the_window_ends() {
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    agent.start(&[]).await;
    agent.connected().await;
    let agents = b.client("admin").agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert!(agents[0].online, "{agents:?}");
    let drift = agents[0].drift.clone();
    assert!(
        drift.is_none_or(|d| d.unexpected.is_empty() && d.missing.is_empty()),
        "a fresh tenant has no drift"
    );

    let r = request(&b.client("alice"), "auto-admin", 2).await;
    let id = r.grant.unwrap();
    let g = applied(&b, id).await;
    assert!(agent.tenant().contains(&g.entitlement), "{:?}", agent.tenant());
    // Direct: in effect where it is used as soon as it is applied.
    assert_eq!(g.effective_at, g.applied_at);
    assert!(g.chain.is_empty(), "no chain for a direct resource");
    let g = removed(&b, id, Duration::from_secs(8)).await;
    assert!(agent.tenant().is_empty(), "{:?}", agent.tenant());
    assert!(g.removed_at.unwrap() >= g.ends_at);
    assert!(
        outbox(&b.client("admin")).await.is_empty(),
        "every command settled"
    );

    let out = b.cli("admin", &["admin", "agents"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("online") && table.contains("aws-test"), "{table}");
}

#[tokio::test]
async fn an_early_revoke_while_the_agent_is_offline_is_carried_out_within_5s_of_reconnect() {
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    agent.start(&[]).await;
    agent.connected().await;
    let alice = b.client("alice");
    let id = request(&alice, "auto-admin", 600).await.grant.unwrap();
    applied(&b, id).await;
    agent.kill().await;
    // The deadline is far away: only the broker's revoke can remove it.
    alice.revoke(id, None).await.unwrap();
    eventually(Duration::from_secs(5), "agent shown offline", || async {
        let a = b.client("admin").agents().await.unwrap();
        (!a[0].online).then_some(())
    })
    .await;
    assert_eq!(agent.tenant().len(), 1, "still applied while the agent is away");
    agent.restart().await;
    agent.connected().await;
    let reconnected = Instant::now();
    removed(&b, id, Duration::from_secs(5)).await;
    assert!(agent.tenant().is_empty());
    println!("revoke carried out {:?} after reconnect", reconnected.elapsed());
}

#[tokio::test]
async fn with_the_broker_killed_the_agent_revokes_on_its_own_at_the_deadline() {
    let mut b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    agent.start(&[]).await;
    agent.connected().await;
    let id = request(&b.client("alice"), "auto-admin", 4).await.grant.unwrap();
    let g = applied(&b, id).await;
    b.kill().await;
    let deadline = g.ends_at;
    let gone_at = eventually(Duration::from_secs(10), "self-revoke", || async {
        agent.tenant().is_empty().then(chrono::Utc::now)
    })
    .await;
    let late = gone_at - deadline;
    println!("removed {late} after the deadline");
    assert!(
        late < chrono::Duration::seconds(2),
        "removed {late} after the deadline"
    );
    assert!(gone_at >= deadline, "never before the deadline");
    // The tenant changes before the agent logs what it did; wait for the line.
    eventually(Duration::from_secs(5), "self-revoke logged", || async {
        agent
            .log()
            .contains("deadline passed without the broker's revoke")
            .then_some(())
    })
    .await;

    // Back up: the agent reports what it did and the broker records it.
    b.restart().await;
    let g = removed(&b, id, Duration::from_secs(10)).await;
    assert!(g.removed_at.is_some());
    eventually(Duration::from_secs(10), "self-revoke acknowledged", || async {
        b.metric("jitgate_agent_self_revokes_total")
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    agent.kill().await;
    let status = agent.status();
    assert!(status.contains("holdings       0"), "{status}");
    assert!(status.contains("unacknowledged self-revokes  0"), "{status}");
}

#[tokio::test]
async fn an_agent_killed_mid_grant_agrees_with_the_broker_after_restart() {
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    agent.start(&["--sandbox-latency", "1500ms"]).await;
    agent.connected().await;
    let id = request(&b.client("alice"), "auto-admin", 6).await.grant.unwrap();
    eventually(
        Duration::from_secs(10),
        "the agent to start on the command",
        || async { agent.log().contains("carrying out command").then_some(()) },
    )
    .await;
    agent.kill().await;
    assert!(grant_of(&b, id).await.applied_at.is_none());
    agent.start(&[]).await;
    let g = applied(&b, id).await;
    assert!(agent.tenant().contains(&g.entitlement));
    removed(&b, id, Duration::from_secs(12)).await;
    assert!(agent.tenant().is_empty(), "nothing left past the window");
    agent.kill().await;
    let status = agent.status();
    assert!(status.contains("holdings       0"), "{status}");
}

/// SIGKILL after the tenant changed but before the agent answered (the
/// sandbox answers 30 s late), for a grant and then for its revoke, and once
/// right after an answer went out (before its record is flushed): after
/// each restart the broker's command is answered from the tenant as it is,
/// the tenant is never changed twice, and nothing outlives the grant.
#[tokio::test]
async fn an_agent_killed_between_acting_and_answering_neither_acts_twice_nor_leaves_access() {
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    let late = ["--sandbox-answer-latency", "30s"];
    agent.start(&late).await;
    agent.connected().await;
    let alice = b.client("alice");
    let id = request(&alice, "auto-admin", 600).await.grant.unwrap();

    eventually(Duration::from_secs(10), "the grant in the tenant", || async {
        (agent.tenant().len() == 1).then_some(())
    })
    .await;
    agent.kill().await;
    assert!(
        grant_of(&b, id).await.applied_at.is_none(),
        "no answer reached the broker"
    );
    agent.start(&late).await;
    let g = applied(&b, id).await;
    // Killed as soon as the answer is in: its record may not be on disk.
    agent.kill().await;
    agent.start(&late).await;
    agent.connected().await;

    alice.revoke(id, None).await.unwrap();
    eventually(Duration::from_secs(10), "the tenant emptied", || async {
        agent.tenant().is_empty().then_some(())
    })
    .await;
    agent.kill().await;
    assert!(
        grant_of(&b, id).await.removed_at.is_none(),
        "no answer reached the broker"
    );
    agent.start(&[]).await;
    removed(&b, id, Duration::from_secs(10)).await;
    assert!(
        outbox(&b.client("admin")).await.is_empty(),
        "every command settled"
    );
    agent.kill().await;

    let principal = g.entitlement.principal.clone();
    assert_eq!(
        agent.tenant_changes(),
        [
            ("apply".to_owned(), principal.clone()),
            ("remove".to_owned(), principal)
        ],
        "each change made once"
    );
    assert!(agent.tenant().is_empty());
    let status = agent.status();
    assert!(status.contains("holdings       0"), "{status}");
    assert!(status.contains("unacknowledged self-revokes  0"), "{status}");
}

#[tokio::test]
async fn new_agents_wait_for_approval_when_the_broker_asks_for_it() {
    let flags = [FAST, &["--agent-approval"]].concat();
    let b = TestBroker::start_with(CATALOG, &policies(), &flags).await;
    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    agent.start(&[]).await;
    eventually(Duration::from_secs(10), "refusal while pending", || async {
        agent.log().contains("awaiting an admin").then_some(())
    })
    .await;
    let out = b.cli("admin", &["admin", "agents"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("pending"));
    let out = b.cli("admin", &["admin", "agents", "approve", &agent.id.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    agent.connected().await;
    // Approving twice is a conflict with a clear message.
    let out = b.cli("admin", &["admin", "agents", "approve", &agent.id.to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not pending"));
}

#[tokio::test]
async fn reconciliation_reports_drift_and_removes_unexpected_entitlements_when_told_to() {
    let flags = [FAST, &["--remove-unexpected"]].concat();
    let b = TestBroker::start_with(CATALOG, &policies(), &flags).await;
    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    // Someone added mallory to a managed permission set behind jitgate's back.
    let planted = serde_json::json!([{
        "configuration": "aws-test",
        "target": {"kind": "aws_account_assignment", "account_id": "111122223333", "permission_set": "DevAdmin"},
        "principal": "mallory@example.com"
    }]);
    std::fs::write(agent.tenant_file(), planted.to_string()).unwrap();
    agent.start(&[]).await;
    agent.connected().await;
    let drift = eventually(Duration::from_secs(10), "drift report", || async {
        b.client("admin").agents().await.unwrap()[0].drift.clone()
    })
    .await;
    assert_eq!(drift.unexpected.len(), 1, "{drift:?}");
    assert_eq!(drift.unexpected[0].principal, "mallory@example.com");
    assert!(drift.removing_unexpected);
    eventually(
        Duration::from_secs(10),
        "unexpected entitlement removed",
        || async { agent.tenant().is_empty().then_some(()) },
    )
    .await;
    let out = b.cli("admin", &["admin", "agents"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 unexpected (revoking), 0 missing"));
}

#[tokio::test]
async fn an_agent_renews_its_certificate_over_the_channel_and_reconnects_with_it() {
    let flags = [FAST, &["--agent-cert-ttl", "60s"]].concat();
    let b = TestBroker::start_with(CATALOG, &policies(), &flags).await;
    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    let before = std::fs::read(agent.state_dir().join("credentials.pem")).unwrap();
    agent.start(&[]).await;
    agent.connected().await;
    eventually(Duration::from_secs(10), "renewal", || async {
        agent.log().contains("certificate renewed").then_some(())
    })
    .await;
    let after = std::fs::read(agent.state_dir().join("credentials.pem")).unwrap();
    assert_ne!(before, after, "new certificate and key");
    agent.restart().await;
    agent.connected().await;
}
