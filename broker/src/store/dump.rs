//! Moving a store's whole state to another backend (`jitgate-broker store
//! copy`): every backend can [dump](super::Store::dump) what it holds as
//! [`Entry`]s and [load](super::Store::load) entries into an empty store of
//! its kind. Indexes (names, outbox positions, counters) are not entries:
//! each backend rebuilds its own from them.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{RecordKind, Store, StoreError};
use crate::audit::anchor::AuditAnchor;
use crate::audit::AuditRecord;
use crate::domain::job::Job;
use crate::domain::user::ApiToken;
use crate::outbox::{Command, CommandResult};

/// One thing a store holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    /// A versioned record, as stored: its JSON carries `version`.
    Record {
        kind: RecordKindName,
        id: String,
        version: u64,
        json: String,
    },
    Token(ApiToken),
    Job(Job),
    /// A command still queued, with its place in its configuration's queue.
    Queued {
        priority: u8,
        seq: u64,
        command: Command,
    },
    /// The id of a command ever queued (queued now, settled or superseded):
    /// it is never queued again.
    Known {
        id: String,
    },
    Result(CommandResult),
    Audit(AuditRecord),
    Anchor(AuditAnchor),
}

/// A record kind by name, for dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordKindName(#[serde(with = "kind_name")] pub RecordKind);

mod kind_name {
    use super::RecordKind;

    pub fn serialize<S: serde::Serializer>(kind: &RecordKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.name())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RecordKind, D::Error> {
        let name: String = serde::Deserialize::deserialize(d)?;
        RecordKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown record kind `{name}`")))
    }
}

/// Takes a dump's entries a page at a time.
#[async_trait]
pub trait DumpSink: Send {
    async fn put(&mut self, entries: Vec<Entry>) -> Result<(), StoreError>;
}

/// Entries per page of a dump.
pub const PAGE: usize = 1000;

/// A digest of a set of entries that does not depend on their order, so
/// two backends' dumps of the same state compare equal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub entries: u64,
    sum: u128,
}

impl Tally {
    /// The digest part, as hex (a backup's end line records it).
    pub fn digest(&self) -> String {
        format!("{:032x}", self.sum)
    }

    pub fn add(&mut self, entry: &Entry) {
        let bytes = serde_json::to_vec(entry).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        self.sum = self.sum.wrapping_add(u128::from_le_bytes(first));
        self.entries += 1;
    }
}

/// What a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub entries: u64,
    pub audit_records: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the destination is not empty ({0} entries): copy only into an empty store")]
    NotEmpty(u64),
    #[error("the copy differs from the source: {source_entries} entries copied, {copied} found")]
    Differs { source_entries: u64, copied: u64 },
    #[error("the copy's audit chain does not verify: {0}")]
    Chain(crate::audit::verify::Broken),
}

struct Loader<'a, F: FnMut(u64) + Send> {
    to: &'a dyn Store,
    tally: Tally,
    audit: u64,
    progress: F,
}

#[async_trait]
impl<F: FnMut(u64) + Send> DumpSink for Loader<'_, F> {
    async fn put(&mut self, entries: Vec<Entry>) -> Result<(), StoreError> {
        for e in &entries {
            self.tally.add(e);
            if matches!(e, Entry::Audit(_)) {
                self.audit += 1;
            }
        }
        self.to.load(entries).await?;
        (self.progress)(self.tally.entries);
        Ok(())
    }
}

struct Counter(Tally);

#[async_trait]
impl DumpSink for Counter {
    async fn put(&mut self, entries: Vec<Entry>) -> Result<(), StoreError> {
        entries.iter().for_each(|e| self.0.add(e));
        Ok(())
    }
}

/// The tally of everything `store` holds.
pub async fn tally(store: &dyn Store) -> Result<Tally, StoreError> {
    let mut counter = Counter(Tally::default());
    store.dump(&mut counter).await?;
    Ok(counter.0)
}

/// Copies everything `from` holds into the empty store `to`, calling
/// `progress` with the entries copied so far; then checks that `to` holds
/// exactly what was copied and that its audit chain verifies.
pub async fn copy(
    from: &dyn Store,
    to: &dyn Store,
    progress: impl FnMut(u64) + Send,
) -> Result<Copied, CopyError> {
    let there = to.entry_count().await?;
    if there > 0 {
        return Err(CopyError::NotEmpty(there));
    }
    let mut loader = Loader {
        to,
        tally: Tally::default(),
        audit: 0,
        progress,
    };
    from.dump(&mut loader).await?;
    let copied = tally(to).await?;
    if copied != loader.tally {
        return Err(CopyError::Differs {
            source_entries: loader.tally.entries,
            copied: copied.entries,
        });
    }
    let report = crate::audit::verify::verify_stored(to, None, |_| {}).await?;
    if let Some(broken) = report.broken {
        return Err(CopyError::Chain(broken));
    }
    Ok(Copied {
        entries: loader.tally.entries,
        audit_records: loader.audit,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use jitgate_shared::v1::api::CommandOp;
    use jitgate_shared::v1::protocol::Outcome;
    use jitgate_shared::v1::{AgentId, GrantId};

    use super::*;
    use crate::domain::job::JobKind;
    use crate::domain::lease::Lease;
    use crate::identity::scim::ScimKind;
    use crate::store::conformance::{aws, config, entry, grant, request, scim, session, t, token, uid, user};
    use crate::store::postgres::scratch::ScratchDatabase;
    use crate::store::postgres::PgStore;
    use crate::store::sled::SledStore;
    use crate::store::Change;
    use crate::testing::command;

    /// A store holding some of everything: records of several kinds, a SCIM
    /// name, tokens, jobs, queued, superseded and settled commands, an
    /// answer, audit records and a signed anchor.
    async fn fill(store: &dyn Store) {
        let alice = user("alice");
        let r = request(&alice, 0);
        let g = grant(&r, 0);
        let lease = Lease::new(g.entitlement.clone()).hold(g.id, g.ends_at).0;
        store
            .commit(Change {
                configurations: vec![config("aws")],
                users: vec![alice, user("bob")],
                requests: vec![r],
                grants: vec![g],
                leases: vec![lease],
                sessions: vec![session("s1", "alice", 600, None)],
                tokens: vec![token("h1", "alice", Some("s1"), 600)],
                scim_resources: vec![scim("u1", ScimKind::User, serde_json::json!({"userName": "Ann"}))],
                schedule: (0..3)
                    .map(|i| Job {
                        due: t(100 + i),
                        kind: JobKind::ExpireGrant(GrantId::generate()),
                    })
                    .collect(),
                commands: vec![
                    command("a-grant", "a", CommandOp::Grant),
                    command("b-grant", "b", CommandOp::Grant),
                    command("c-grant", "c", CommandOp::Grant),
                ],
                audit: vec![entry(), entry()],
                ..Change::default()
            })
            .await
            .unwrap();
        let settled = store.queued_command("c-grant").await.unwrap().unwrap();
        store
            .commit(Change {
                // Supersedes a-grant; c-grant settles with an answer.
                commands: vec![command("a-revoke", "a", CommandOp::Revoke)],
                delivered: vec![settled.id.clone()],
                results: vec![CommandResult {
                    command: settled.id,
                    configuration: aws(),
                    grant: settled.grant,
                    op: settled.op,
                    agent: AgentId::generate(),
                    outcome: Outcome::Applied,
                    at: t(1),
                }],
                audit: vec![entry()],
                ..Change::default()
            })
            .await
            .unwrap();
        let signer = crate::audit::anchor::AnchorSigner::from_secret(&[9; 32]);
        let head = store.audit_head().await.unwrap();
        store
            .commit(Change {
                audit_anchor: Some(signer.sign(&head, t(2))),
                ..Change::default()
            })
            .await
            .unwrap();
    }

    fn sled(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(SledStore::open(dir).unwrap())
    }

    async fn postgres(db: &ScratchDatabase) -> Arc<dyn Store> {
        Arc::new(PgStore::open(&db.settings(), true).await.unwrap())
    }

    async fn queue_order(store: &dyn Store) -> Vec<String> {
        store
            .outbox(&aws(), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    /// sled → PostgreSQL → sled: each copy holds exactly what its source
    /// did, reads back the same, and goes on from there (queue order, the
    /// audit chain, ids already used).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_copies_to_the_other_backend_and_back_whole() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let db = ScratchDatabase::create().await.unwrap();
        let first = sled(a.path());
        fill(first.as_ref()).await;
        let second = postgres(&db).await;
        let mut seen = Vec::new();
        let copied = copy(first.as_ref(), second.as_ref(), |n| seen.push(n))
            .await
            .unwrap();
        assert_eq!(copied.audit_records, 3);
        assert_eq!(
            seen.last().copied(),
            Some(copied.entries),
            "progress reaches the end"
        );
        let third = sled(b.path());
        copy(second.as_ref(), third.as_ref(), |_| {}).await.unwrap();
        let tallies = [
            tally(first.as_ref()).await.unwrap(),
            tally(second.as_ref()).await.unwrap(),
            tally(third.as_ref()).await.unwrap(),
        ];
        assert!(tallies.iter().all(|t| *t == tallies[0]), "{tallies:?}");

        let head = first.audit_head().await.unwrap();
        for store in [&first, &second, &third] {
            assert_eq!(queue_order(store.as_ref()).await, ["a-revoke", "b-grant"]);
            assert_eq!(
                store
                    .scim_named("okta", ScimKind::User, "ann")
                    .await
                    .unwrap()
                    .len(),
                1
            );
            assert_eq!(store.next_due().await.unwrap(), Some(t(100)));
            assert!(store.command_result("c-grant").await.unwrap().is_some());
            assert_eq!(store.audit_head().await.unwrap(), head);
            assert!(store.audit_anchor().await.unwrap().is_some());
            assert_eq!(store.user(&uid("alice")).await.unwrap().unwrap().version, 1);
            // Found by person (the embedded store's indexes by user are
            // rebuilt by a load).
            let page = crate::store::PageQuery::new(None::<String>, 10);
            let of_alice = crate::store::GrantFilter {
                user: Some(uid("alice")),
                ..crate::store::GrantFilter::default()
            };
            assert_eq!(store.grants(&page, &of_alice).await.unwrap().len(), 1);
            let of_alice = crate::store::RequestFilter {
                requester: Some(uid("alice")),
                ..crate::store::RequestFilter::default()
            };
            assert_eq!(store.requests(&page, &of_alice).await.unwrap().len(), 1);
            // Going on: a new command queues behind the copied ones; ids
            // already used stay used; the chain continues.
            store
                .commit(Change {
                    commands: vec![
                        command("d-grant", "d", CommandOp::Grant),
                        command("c-grant", "c", CommandOp::Grant),
                    ],
                    audit: vec![entry()],
                    ..Change::default()
                })
                .await
                .unwrap();
            assert_eq!(
                queue_order(store.as_ref()).await,
                ["a-revoke", "b-grant", "d-grant"]
            );
            let mut verifier = crate::audit::ChainVerifier::default();
            for r in store.audit(1, 100).await.unwrap() {
                verifier.check(&r).unwrap();
            }
            assert_eq!(verifier.verified(), 4);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_goes_only_into_an_empty_store() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (sled(a.path()), sled(b.path()));
        fill(from.as_ref()).await;
        to.commit(Change {
            users: vec![user("carol")],
            ..Change::default()
        })
        .await
        .unwrap();
        let err = copy(from.as_ref(), to.as_ref(), |_| {}).await.unwrap_err();
        assert!(matches!(err, CopyError::NotEmpty(1)), "{err}");
    }
}
