use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{CommandOp, ConfigKind, Configuration, IdentityMode};
use jitgate_shared::v1::{ConfigId, Entitlement, GrantId, Target};

use super::*;
use crate::audit::{Actor, AuditEntry, AuditEvent, ChainVerifier};
use crate::domain::job::JobKind;

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

fn config(id: &str) -> StoredConfiguration {
    StoredConfiguration {
        version: 0,
        config: Configuration {
            id: ConfigId::new(id).unwrap(),
            kind: ConfigKind::AwsIam,
            display_name: String::new(),
            tenant: Default::default(),
            identity_mode: IdentityMode::Direct,
            enabled: true,
        },
    }
}

fn command(id: &str, op: CommandOp) -> Command {
    Command {
        id: id.into(),
        op,
        grant: GrantId::generate(),
        entitlement: Entitlement {
            configuration: ConfigId::new("aws").unwrap(),
            target: Target::AwsIamGroupMembership {
                group_name: "admins".into(),
            },
            principal: "alice".into(),
        },
        not_before: t(0),
        not_after: t(60),
        issued_at: t(0),
        cap_session_duration: false,
        end_sign_in_sessions: false,
        provision_on_demand: None,
    }
}

fn entry() -> AuditEntry {
    AuditEntry {
        at: t(0),
        actor: Actor::System,
        event: AuditEvent::ConfigurationSaved {
            configuration: ConfigId::new("aws").unwrap(),
        },
    }
}

#[tokio::test]
async fn compare_and_set_lets_exactly_one_writer_win() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let first = Change {
        configurations: vec![config("aws")],
        ..Change::default()
    };
    store.commit(first.clone()).await.unwrap();
    // A second create of the same record (read at version 0) conflicts.
    let err = store.commit(first).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let stored = store
        .configuration(&ConfigId::new("aws").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 1);
    // Two updates read at version 1: one wins, one conflicts, in one batch.
    let update = Change {
        configurations: vec![stored.clone()],
        audit: vec![entry()],
        ..Change::default()
    };
    let results = store.commit_all(vec![update.clone(), update]).await;
    assert!(results[0].is_ok());
    assert!(results[1].as_ref().unwrap_err().is_conflict());
    // The failed change left no audit record behind.
    assert_eq!(store.audit(1, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn outbox_is_idempotent_by_command_id_and_revokes_come_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let mut revoke = command("r1", CommandOp::Revoke);
    revoke.entitlement.principal = "bob".into();
    let change = Change {
        commands: vec![command("g1", CommandOp::Grant), revoke],
        ..Change::default()
    };
    store.commit(change.clone()).await.unwrap();
    store.commit(change).await.unwrap();
    let out = store.outbox(&ConfigId::new("aws").unwrap(), 10).await.unwrap();
    let ids: Vec<_> = out.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["r1", "g1"]);
}

#[tokio::test]
async fn a_change_that_writes_one_key_twice_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let twice = Change {
        configurations: vec![config("aws"), config("aws")],
        audit: vec![entry()],
        ..Change::default()
    };
    let err = store.commit(twice).await.unwrap_err();
    assert!(
        matches!(err, StoreError::WrittenTwice { record: "configuration", ref id } if id == "aws"),
        "{err}"
    );
    // Two commands for one entitlement: the second would leave the first
    // queued behind the outbox's back.
    let commands = Change {
        commands: vec![command("g1", CommandOp::Grant), command("r1", CommandOp::Revoke)],
        ..Change::default()
    };
    assert!(matches!(
        store.commit(commands).await.unwrap_err(),
        StoreError::WrittenTwice { .. }
    ));
    assert!(store
        .configuration(&ConfigId::new("aws").unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(
        store.audit(1, 10).await.unwrap().is_empty(),
        "nothing of either was written"
    );
    assert!(store
        .outbox(&ConfigId::new("aws").unwrap(), 10)
        .await
        .unwrap()
        .is_empty());
}

/// Opens a store again after its last handle was dropped in this process:
/// sled lets go of the file lock when its background flusher does, a
/// moment later (a new process never waits: the lock dies with the old one).
async fn reopen(dir: &std::path::Path) -> SledStore {
    for _ in 0..100 {
        if let Ok(store) = SledStore::open(dir) {
            return store;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    SledStore::open(dir).unwrap()
}

#[tokio::test]
async fn jobs_come_due_in_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let jobs: Vec<Job> = (0..5)
        .map(|i| Job {
            due: t(10 * (5 - i)),
            kind: JobKind::ExpireGrant(GrantId::generate()),
        })
        .collect();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .commit(Change {
                schedule: jobs.clone(),
                audit: vec![entry(), entry()],
                ..Change::default()
            })
            .await
            .unwrap();
        assert!(SledStore::open(dir.path()).is_err(), "a second opener is refused");
    }
    let store = reopen(dir.path()).await;
    assert_eq!(store.next_due().await.unwrap(), Some(t(10)));
    let due = store.due_jobs(t(30), 100).await.unwrap();
    assert_eq!(
        due.iter().map(|j| j.due).collect::<Vec<_>>(),
        [t(10), t(20), t(30)]
    );
    store
        .commit(Change {
            unschedule: due,
            audit: vec![entry()],
            ..Change::default()
        })
        .await
        .unwrap();
    assert_eq!(store.job_count().await.unwrap(), 2);
    // The audit chain continues across the reopen.
    let mut v = ChainVerifier::default();
    for r in store.audit(1, 100).await.unwrap() {
        v.check(&r).unwrap();
    }
    assert_eq!(v.verified(), 3);
}

/// Many writers committing at once all finish and all land: a regression
/// test for sled's `flush_async` lockup under concurrent polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_all_complete_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                store
                    .commit(Change {
                        audit: vec![entry()],
                        ..Change::default()
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut v = ChainVerifier::default();
    for r in store.audit(1, 1000).await.unwrap() {
        v.check(&r).unwrap();
    }
    assert_eq!(v.verified(), 400);
}
