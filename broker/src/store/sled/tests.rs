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

/// A store from before grants and requests were indexed by user (format 1)
/// is indexed at open: each person's grants and requests are found, and
/// the store is marked as of this broker's format.
#[tokio::test]
async fn a_format_1_store_is_indexed_by_user_at_open() {
    use crate::store::conformance::{grant, request, user};
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (user("alice"), user("bob"));
    let requests: Vec<_> = (0..4)
        .map(|i| request(if i % 2 == 0 { &alice } else { &bob }, i))
        .collect();
    let grants: Vec<_> = requests.iter().zip(0..).map(|(r, i)| grant(r, i)).collect();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .commit(Change {
                requests: requests.clone(),
                grants: grants.clone(),
                ..Change::default()
            })
            .await
            .unwrap();
        // As a format-1 broker left it: no entries by user, marked 1.
        for prefix in [keys::GRANT_USER, keys::REQUEST_REQUESTER] {
            let entries: Vec<_> = store.db.scan_prefix(prefix).keys().map(Result::unwrap).collect();
            assert_eq!(entries.len(), 4, "{prefix}");
            for k in entries {
                store.db.remove(k).unwrap();
            }
        }
        let meta = store.db.open_tree(META_TREE).unwrap();
        meta.insert(FORMAT_KEY, &1_u32.to_be_bytes()).unwrap();
        store.db.flush().unwrap();
    }
    let store = crate::testing::open_sled_when_free(dir.path()).await;
    let all = PageQuery::new(None::<String>, 10);
    let of_alice = GrantFilter {
        user: Some(alice.id.clone()),
        ..GrantFilter::default()
    };
    let found: Vec<_> = store
        .grants(&all, &of_alice)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(found, [grants[2].id, grants[0].id]);
    let of_bob = RequestFilter {
        requester: Some(bob.id.clone()),
        ..RequestFilter::default()
    };
    let found: Vec<_> = store
        .requests(&all, &of_bob)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(found, [requests[3].id, requests[1].id]);
    let marked = store
        .db
        .open_tree(META_TREE)
        .unwrap()
        .get(FORMAT_KEY)
        .unwrap()
        .unwrap();
    assert_eq!(marked.as_ref(), FORMAT.to_be_bytes());
}
