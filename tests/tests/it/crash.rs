//! SIGKILL while 1,000 short grants are active: after restart every expiry
//! still happens, overdue ones at once, with no duplicates beyond the
//! idempotency key, and the audit chain verifies.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use jitgate_broker::cli::client::ApiClient;
use jitgate_shared::v1::api::{CommandOp, EndReason, GrantState, RequestState};
use jitgate_tests::broker::TestBroker;

use crate::support::{all_grants, ask, eventually, past, BULK_POLICY as POLICY, BULK_WORKFLOWS as WORKFLOWS};

const USERS: usize = 50;
const RESOURCES: usize = 20;

fn catalog() -> String {
    crate::support::bulk_catalog(USERS, RESOURCES)
}

#[tokio::test]
async fn sigkill_with_1000_active_grants_loses_no_expiry() {
    let mut b = TestBroker::start(&catalog(), &[("p.cedar", POLICY), ("workflows.toml", WORKFLOWS)]).await;
    let clients: Vec<ApiClient> = (0..USERS).map(|u| b.client(&format!("u{u}"))).collect();
    let jobs = (0..USERS * RESOURCES).map(|i| {
        let client = clients[i % USERS].clone();
        // Windows of 6 to 15 s: some fall due while the broker is down.
        let body = ask(&format!("r{}", i / USERS), 6 + (i % 10) as u64);
        async move { client.create_request(&body).await.unwrap() }
    });
    let created: Vec<_> = futures::stream::iter(jobs).buffer_unordered(16).collect().await;
    assert_eq!(created.len(), 1000);
    assert!(created.iter().all(|r| r.state == RequestState::Active));

    let mut ends: Vec<_> = all_grants(&b.client("admin"))
        .await
        .iter()
        .map(|g| g.ends_at)
        .collect();
    ends.sort();
    b.kill().await;
    let killed_at = chrono::Utc::now();
    // Stay down until a tenth of the windows have closed.
    past(ends[ends.len() / 10]).await;
    b.restart().await;
    let admin = b.client("admin");

    let grants = eventually(Duration::from_secs(60), "every grant to end", || async {
        let g = all_grants(&admin).await;
        g.iter().all(|g| g.state == GrantState::Ended).then_some(g)
    })
    .await;
    assert_eq!(grants.len(), 1000);
    for g in &grants {
        assert_eq!(g.end_reason, Some(EndReason::Expired), "{g:?}");
        assert!(
            g.ended_at.unwrap() >= g.ends_at,
            "ended before its window closed: {g:?}"
        );
    }
    assert!(
        grants.iter().any(|g| g.ends_at > killed_at),
        "some windows were still open when the broker was killed"
    );

    let outbox = admin.outbox("aws-test", 100_000).await.unwrap();
    let ids: HashSet<_> = outbox.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), outbox.len(), "no command queued twice");
    let revoked: HashSet<_> = outbox
        .iter()
        .filter(|c| c.op == CommandOp::Revoke)
        .map(|c| (c.entitlement.principal.clone(), c.entitlement.target.clone()))
        .collect();
    assert_eq!(revoked.len(), 1000, "one revoke per entitlement");
    assert_eq!(
        outbox.len(),
        1000,
        "each revoke superseded its queued grant (no agent took them)"
    );

    b.stop().await;
    let out = b.offline(&["audit", "verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("audit chain intact"), "{said}");
    let export = b.offline(&["audit", "export"]);
    assert!(export.status.success());
    let lines = String::from_utf8_lossy(&export.stdout).lines().count();
    assert!(
        lines > 4000,
        "requests, approvals, grants, commands and ends are audited: {lines}"
    );
}

#[tokio::test]
async fn audit_verify_names_the_first_tampered_record_of_an_export() {
    let mut b = TestBroker::start(&catalog(), &[("p.cedar", POLICY), ("workflows.toml", WORKFLOWS)]).await;
    b.client("u1").create_request(&ask("r1", 600)).await.unwrap();
    b.stop().await;
    let file = b.path("audit.jsonl");
    let out = b.offline(&["audit", "export", "--output", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verify = |b: &TestBroker| b.offline(&["audit", "verify", "--input", file.to_str().unwrap()]);
    assert!(verify(&b).status.success());

    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("\"request_created\""))
        .unwrap();
    let mut tampered: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    tampered[at] = tampered[at].replace("\"u1\"", "\"u9\"");
    assert_ne!(tampered[at], lines[at]);
    std::fs::write(&file, tampered.join("\n") + "\n").unwrap();
    let out = verify(&b);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "tampering went unnoticed");
    assert!(
        err.contains(&format!("record {}: content does not match its hash", at + 1)),
        "{err}"
    );

    // Dropping a record is found too.
    let mut dropped: Vec<&str> = lines.clone();
    dropped.remove(1);
    std::fs::write(&file, dropped.join("\n") + "\n").unwrap();
    let err = String::from_utf8_lossy(&verify(&b).stderr).into_owned();
    assert!(err.contains("record 3: expected sequence number 2"), "{err}");
}

#[tokio::test]
async fn audit_verify_finds_a_cut_off_or_rewritten_tail_by_the_signed_head() {
    use jitgate_broker::audit::{Actor, AuditEntry, AuditEvent, AuditHead};
    use jitgate_tests::tamper::AuditStore;
    let mut b = TestBroker::start(&catalog(), &[("p.cedar", POLICY), ("workflows.toml", WORKFLOWS)]).await;
    for i in 0..3 {
        b.client("u1")
            .create_request(&ask(&format!("r{i}"), 600))
            .await
            .unwrap();
    }
    b.stop().await;
    let verify = |b: &TestBroker| {
        let out = b.offline(&["audit", "verify"]);
        (out.status.success(), crate::support::said(&out))
    };
    let (ok, said) = verify(&b);
    assert!(ok, "{said}");
    assert!(
        said.contains("signed head at record"),
        "the shutdown signed the head: {said}"
    );

    // A consistent chain, one record short: only the signed head shows it.
    let db = AuditStore::of(&b).await;
    let last = db.last().await;
    db.remove(last.seq).await;
    drop(db);
    let (ok, said) = verify(&b);
    assert!(!ok, "a cut-off tail went unnoticed: {said}");
    assert!(
        said.contains("cut short") && said.contains(&format!("records {} to {}", last.seq, last.seq)),
        "{said}"
    );

    // The last record replaced by another that chains correctly.
    let db = AuditStore::of(&b).await;
    let prev = db.last().await;
    let head = AuditHead {
        seq: prev.seq,
        hash: prev.hash.clone(),
    };
    let (forged, _) = head.append(AuditEntry {
        at: last.at,
        actor: Actor::System,
        event: AuditEvent::SessionEnded {
            session: "nothing to see".into(),
            user: "u1".parse().unwrap(),
        },
    });
    db.put(&forged).await;
    drop(db);
    let (ok, said) = verify(&b);
    assert!(!ok, "a rewritten tail went unnoticed: {said}");
    assert!(
        said.contains(&format!("record {} is not the one", last.seq)),
        "{said}"
    );
}
