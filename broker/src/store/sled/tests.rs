use chrono::{DateTime, Utc};
use jitgate_shared::v1::ConfigId;

use super::*;
use crate::audit::{Actor, AuditEntry, AuditEvent, ChainVerifier};

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
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

/// One data directory, one broker: a second opener is refused while the
/// first holds it (the backend-independent cases are in
/// [`conformance`](crate::store::conformance)).
#[tokio::test]
async fn a_second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = SledStore::open(dir.path()).unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("in use by another process"), "{err}");
    let StoreError::Open { source, .. } = &err else {
        unreachable!()
    };
    assert!(
        source.downcast_ref::<sled::Error>().is_some(),
        "sled's own error is kept: {source:?}"
    );
    assert!(std::error::Error::source(&err).is_some());
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
