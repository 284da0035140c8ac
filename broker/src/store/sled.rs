//! The embedded store: one sled keyspace, one atomic batch per commit, one
//! flush per commit (or per group of commits).
//!
//! Writers are serialised by a mutex held while versions are checked and the
//! batch is applied (microseconds, no I/O); the flush happens after the mutex
//! is released. Concurrent writers' changes go into one batch with one
//! flush ([`commit_queue`]).

mod commit_queue;
mod dump;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jitgate_shared::v1::{AgentId, ConfigId, GrantId, RequestId, ResourceId, UserId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys::{self, key};
use super::{
    Change, Committed, GrantFilter, PageQuery, Record, RecordKind, RequestFilter, ScimFilter, SessionFilter,
    Store, StoreError, TokenFilter,
};
use crate::audit::anchor::AuditAnchor;
use crate::audit::{AuditHead, AuditRecord};
use crate::domain::agent::{Agent, JoinToken};
use crate::domain::catalog::{StoredConfiguration, StoredResource};
use crate::domain::contact::LastContact;
use crate::domain::grant::Grant;
use crate::domain::job::Job;
use crate::domain::lease::Lease;
use crate::domain::request::Request;
use crate::domain::session::{PendingLogin, Session, UsedAssertion};
use crate::domain::user::{ApiToken, User};
use crate::identity::scim::{ScimConnection, ScimKind, ScimResource};
use crate::notify::queue::{Cursor, Notification};
use crate::outbox::{Command, CommandResult};

/// sled's page cache. Its default (1 GiB) fills while a large store is
/// recovered at start, and the broker keeps that memory. It fills to this
/// bound as the store's history grows (every audit chain verification
/// reads the whole chain) and stays there. Measured on a store of 200,000
/// grants (docs/benchmarks.md), a whole-chain read added about 100 MiB to
/// a restarted broker's memory with a bound of 128 MiB and 35 MiB with
/// this one, with no measurable cost to expiry batches or request
/// creation. What sled keeps for every page it holds, cached or not, is
/// apart from this bound and grows with the store.
pub const CACHE_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    writer: Mutex<WriterState>,
    commits: commit_queue::CommitQueue<Change, Result<Committed, StoreError>>,
}

/// Counters only the writer advances, cached so commits need not read them.
#[derive(Debug)]
struct WriterState {
    audit_head: AuditHead,
    outbox_seq: u64,
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::backend(e)
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(backend)
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source: std::sync::Arc::new(e),
    })
}

/// The keys under `prefix` a page may take from: those before its cursor.
fn page_range(prefix: &str, page: &PageQuery) -> std::ops::Range<Vec<u8>> {
    let end = match &page.after {
        Some(after) => key(prefix, after),
        None => keys::prefix_end(prefix.as_bytes()),
    };
    prefix.as_bytes().to_vec()..end
}

/// Up to a page of the records `stored` yields (key and stored value, in
/// page order) that `keep_raw` (on the body without its version) and then
/// `filter` keep.
fn fill_page<T: DeserializeOwned>(
    stored: impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>>,
    page: &PageQuery,
    keep_raw: impl Fn(&[u8]) -> bool,
    filter: impl Fn(&T) -> bool,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for kv in stored {
        let (k, v) = kv?;
        if !v.get(VERSION_LEN..).is_none_or(&keep_raw) {
            continue;
        }
        let item: T = decode_versioned(&k, &v)?;
        if filter(&item) {
            out.push(item);
            if out.len() >= page.limit {
                break;
            }
        }
    }
    Ok(out)
}

/// A key whose value is not what its prefix says.
fn corrupt(k: &[u8], why: &str) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        source: std::sync::Arc::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            why.to_owned(),
        )),
    }
}

// Versioned records (configurations, resources, users, requests, grants,
// leases) are stored as their 8-byte big-endian version followed by their
// JSON, so a compare-and-set reads the version without parsing the record.
const VERSION_LEN: usize = 8;

fn version_of(key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .get(..VERSION_LEN)
        .and_then(|b| <[u8; VERSION_LEN]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            source: std::sync::Arc::new(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "shorter than its version prefix",
            )),
        })
}

fn decode_versioned<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    version_of(key, bytes)?;
    decode(key, &bytes[VERSION_LEN..])
}

/// Whether opening failed because another process holds the directory's
/// lock. sled 0.34 reports it as an I/O error of kind `Other` whose message
/// carries the lock call's `WouldBlock` as text ("could not acquire lock on
/// ..."), so the text is all there is to go by; a plain `WouldBlock` is
/// taken too, should sled pass it through.
fn locked_by_another(e: &sled::Error) -> bool {
    let sled::Error::Io(io) = e else {
        return false;
    };
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock")
}

/// Where a versioned record lives in the keyspace.
fn record_key(record: &dyn Record) -> Vec<u8> {
    key(keys::record_prefix(record.kind()), record.id())
}

/// A versioned record's stored form at `version`: the version, then JSON.
fn encode_record(record: &dyn Record, version: u64) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&version.to_be_bytes());
    record.write_json_at(version, &mut out).map_err(backend)?;
    Ok(out)
}

/// The outbox of one change being staged, for the shared
/// [queue rules](crate::outbox::queue). Entries live under
/// `o/{configuration}/{priority}/{seq}`, with two indexes: command id →
/// entry key (empty once it left the queue: the id stays known) and
/// entitlement → entry key.
struct SledQueue<'a> {
    store: &'a SledStore,
    staged: &'a HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// This change's writes so far (a handful), read before `staged`.
    writes: &'a mut Vec<(Vec<u8>, Option<Vec<u8>>)>,
    seq: u64,
}

impl SledQueue<'_> {
    fn read(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.iter().rev().find(|(w, _)| w.as_slice() == k) {
            Some((_, v)) => Ok(v.clone()),
            None => self.store.read_staged(self.staged, k),
        }
    }

    fn write(&mut self, k: Vec<u8>, v: Option<Vec<u8>>) {
        self.writes.push((k, v));
    }

    fn entry(&self, entry_key: Option<Vec<u8>>) -> Result<Option<Command>, StoreError> {
        let Some(k) = entry_key.filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        match self.read(&k)? {
            Some(bytes) => Ok(Some(decode(&k, &bytes)?)),
            None => Ok(None),
        }
    }
}

fn by_entitlement(e: &jitgate_shared::v1::Entitlement) -> Vec<u8> {
    keys::outbox_entitlement(e.configuration.as_str(), &e.digest())
}

impl crate::outbox::queue::QueueBackend for SledQueue<'_> {
    fn known(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(self.read(&key(keys::OUTBOX_ID, id))?.is_some())
    }

    fn queued(&mut self, id: &str) -> Result<Option<Command>, StoreError> {
        let entry = self.read(&key(keys::OUTBOX_ID, id))?;
        self.entry(entry)
    }

    fn queued_for(&mut self, e: &jitgate_shared::v1::Entitlement) -> Result<Option<Command>, StoreError> {
        let entry = self.read(&by_entitlement(e))?;
        self.entry(entry)
    }

    fn remove(&mut self, command: &Command) -> Result<(), StoreError> {
        let id_key = key(keys::OUTBOX_ID, &command.id);
        let Some(entry) = self.read(&id_key)?.filter(|k| !k.is_empty()) else {
            return Ok(());
        };
        let index = by_entitlement(&command.entitlement);
        if self.read(&index)?.as_deref() == Some(entry.as_slice()) {
            self.write(index, None);
        }
        self.write(entry, None);
        self.write(id_key, Some(Vec::new()));
        Ok(())
    }

    fn append(&mut self, command: &Command, priority: u8) -> Result<(), StoreError> {
        self.seq += 1;
        let entry = keys::outbox(command.entitlement.configuration.as_str(), priority, self.seq);
        self.write(key(keys::OUTBOX_ID, &command.id), Some(entry.clone()));
        self.write(by_entitlement(&command.entitlement), Some(entry.clone()));
        self.write(entry, Some(encode(command)?));
        Ok(())
    }
}

/// How the broker opens sled in `dir` (the foundation benchmark opens it
/// the same way for its memory floor).
pub fn sled_config(dir: &Path) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(CACHE_BYTES)
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`. Fails clearly when
    /// another process holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled_config(dir).open().map_err(|e| StoreError::Open {
            path: dir.display().to_string(),
            reason: if locked_by_another(&e) {
                "in use by another process (is a broker running on this data directory?)".to_owned()
            } else {
                e.to_string()
            },
            source: std::sync::Arc::new(e),
        })?;
        check_format(&db, dir)?;
        // The chain's head is its last record, written in the same batch as
        // the change it audits.
        let audit_head = match db.scan_prefix(keys::AUDIT).next_back() {
            Some(kv) => {
                let (k, v) = kv.map_err(backend)?;
                let last: AuditRecord = decode(&k, &v)?;
                AuditHead {
                    seq: last.seq,
                    hash: last.hash,
                }
            }
            None => AuditHead::default(),
        };
        let outbox_seq = match db.get(keys::OUTBOX_SEQ).map_err(backend)? {
            Some(v) => decode(keys::OUTBOX_SEQ.as_bytes(), &v)?,
            None => 0,
        };
        Ok(Self {
            db,
            writer: Mutex::new(WriterState {
                audit_head,
                outbox_seq,
            }),
            commits: commit_queue::CommitQueue::default(),
        })
    }

    /// Hands every entry to `each` as of one instant: no change commits
    /// while it runs (writers wait), so a running broker's store can be
    /// backed up consistently. `each` should be quick (a local file).
    pub fn snapshot(
        &self,
        each: &mut dyn FnMut(super::dump::Entry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _writers_wait = jitgate_shared::sync::lock(&self.writer);
        for kv in self.db.iter() {
            let (k, v) = kv.map_err(backend)?;
            if let Some(entry) = dump::entry(&k, &v)? {
                each(entry)?;
            }
        }
        Ok(())
    }

    /// Changes committed and flushes made since opening: with concurrent
    /// writers, many changes per flush.
    pub fn commits_and_flushes(&self) -> (u64, u64) {
        let c = self.commits.counts();
        (c.items, c.writes)
    }

    fn get<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db.get(k).map_err(backend)? {
            Some(v) => Ok(Some(decode(k, &v)?)),
            None => Ok(None),
        }
    }

    fn get_versioned<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db.get(k).map_err(backend)? {
            Some(v) => Ok(Some(decode_versioned(k, &v)?)),
            None => Ok(None),
        }
    }

    fn scan_versioned<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        self.db
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                decode_versioned(&k, &v)
            })
            .collect()
    }

    /// Newest-first page over a prefix whose ids sort by creation time.
    fn page<T: DeserializeOwned>(
        &self,
        prefix: &str,
        page: &PageQuery,
        filter: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        self.page_where(prefix, page, |_| true, filter)
    }

    /// As [`page`](Self::page), first asking `keep_raw` of each stored
    /// body (without its version), so a scan can skip what it would not
    /// keep without decoding it whole.
    fn page_where<T: DeserializeOwned>(
        &self,
        prefix: &str,
        page: &PageQuery,
        keep_raw: impl Fn(&[u8]) -> bool,
        filter: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let stored = self
            .db
            .range(page_range(prefix, page))
            .rev()
            .map(|kv| kv.map_err(backend));
        fill_page(stored, page, keep_raw, filter)
    }

    /// As [`page_where`](Self::page_where), over the records a by-user
    /// index names under `index` (`{prefix}{user}/`), stored at `prefix`:
    /// the same order and cursor (ids sort by creation), reading only that
    /// user's records.
    fn page_indexed<T: DeserializeOwned>(
        &self,
        index: &str,
        prefix: &str,
        page: &PageQuery,
        keep_raw: impl Fn(&[u8]) -> bool,
        filter: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let stored = self.db.range(page_range(index, page)).rev().map(|kv| {
            let (entry, _) = kv.map_err(backend)?;
            let id =
                keys::indexed_id(&entry).ok_or_else(|| corrupt(&entry, "an index entry without an id"))?;
            let k = key(prefix, id);
            // Written in the same batch as the record, never deleted.
            let v = self
                .db
                .get(&k)
                .map_err(backend)?
                .ok_or_else(|| corrupt(&entry, "an index entry naming no record"))?;
            Ok((sled::IVec::from(k), v))
        });
        fill_page(stored, page, keep_raw, filter)
    }

    /// A value as this batch leaves it: staged writes first, then the db.
    fn read_staged(
        &self,
        staged: &HashMap<Vec<u8>, Option<Vec<u8>>>,
        k: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match staged.get(k) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.db.get(k).map_err(backend)?.map(|v| v.to_vec())),
        }
    }

    /// Keeps the SCIM name index in step with a resource written (`now`) or
    /// deleted (`None`): the entry of its stored name goes, the new one
    /// comes.
    fn stage_scim_name(
        &self,
        record: &ScimResource,
        now: Option<&ScimResource>,
        staged: &HashMap<Vec<u8>, Option<Vec<u8>>>,
        writes: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let stored_at = record_key(record);
        let before = match self.read_staged(staged, &stored_at)? {
            Some(bytes) => decode_versioned::<ScimResource>(&stored_at, &bytes)?.index_name(),
            None => None,
        };
        let after = now.and_then(ScimResource::index_name);
        if before == after {
            return Ok(());
        }
        let entry = |name: &str| keys::scim_name(&record.connection, record.kind, name, &record.id);
        if let Some(name) = before {
            writes.push((entry(&name), None));
        }
        if let Some(name) = after {
            writes.push((entry(&name), Some(Vec::new())));
        }
        Ok(())
    }

    /// Keeps the notification indexes in step with a notification written
    /// (`now`) or deleted (`None`): the entry of its stored due time goes,
    /// the new one comes; its request's entry comes with it and goes with
    /// it.
    fn stage_notification_indexes(
        &self,
        id: &str,
        now: Option<&Notification>,
        staged: &HashMap<Vec<u8>, Option<Vec<u8>>>,
        writes: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let stored_at = key(keys::NOTIFICATION, id);
        let stored = match self.read_staged(staged, &stored_at)? {
            Some(bytes) => Some(decode_versioned::<Notification>(&stored_at, &bytes)?),
            None => None,
        };
        // Indexed by request when about one (`agent_offline` is not).
        match (now, &stored) {
            (Some(n), None) => {
                if let Some(request) = n.event.request_id() {
                    let k = keys::notification_request(&request.to_string(), id);
                    writes.push((k, Some(Vec::new())));
                }
            }
            (None, Some(n)) => {
                if let Some(request) = n.event.request_id() {
                    let k = keys::notification_request(&request.to_string(), id);
                    writes.push((k, None));
                }
            }
            _ => {}
        }
        let before = stored.and_then(|n| n.due);
        let after = now.and_then(|n| n.due);
        if before == after {
            return Ok(());
        }
        if let Some(due) = before {
            writes.push((keys::notification_due(due, id), None));
        }
        if let Some(due) = after {
            writes.push((keys::notification_due(due, id), Some(Vec::new())));
        }
        Ok(())
    }

    /// Checks versions and stages `change` into `staged`. Nothing is staged
    /// when any check fails.
    fn stage(
        &self,
        change: Change,
        state: &mut WriterState,
        staged: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<Committed, StoreError> {
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut written = std::collections::HashSet::new();
        // Compare-and-set: each record carries the version it was read at (0
        // for new records); the stored one must still be that, and the
        // written one is the next. A record written twice in one change is
        // refused: the last write would win silently.
        let mut committed = Committed::default();
        for record in change.records() {
            let k = record_key(record);
            if !written.insert(k.clone()) {
                return Err(StoreError::WrittenTwice {
                    record: record.kind().name(),
                    id: record.id(),
                });
            }
            let read = record.version();
            let found = match staged.get(&k) {
                Some(Some(v)) => version_of(&k, v)?,
                Some(None) => 0,
                None => match self.db.get(&k).map_err(backend)? {
                    Some(v) => version_of(&k, &v)?,
                    None => 0,
                },
            };
            if found != read {
                return Err(StoreError::Conflict {
                    record: record.kind().name(),
                    id: record.id(),
                    expected: read,
                    found,
                });
            }
            writes.push((k, Some(encode_record(record, read + 1)?)));
            committed.wrote(record.kind(), record.id(), read + 1);
        }
        // New grants and requests join the indexes by user; their user
        // never changes, so later writes leave the entries be.
        for g in change.grants.iter().filter(|g| g.version == 0) {
            let entry = keys::grant_user(g.user.as_str(), &g.id.to_string());
            writes.push((entry, Some(Vec::new())));
        }
        for r in change.requests.iter().filter(|r| r.version == 0) {
            let entry = keys::request_requester(r.requester.as_str(), &r.id.to_string());
            writes.push((entry, Some(Vec::new())));
        }
        for k in &change.delete_pending_logins {
            writes.push((key(keys::PENDING_LOGIN, k), None));
        }
        for k in &change.delete_used_assertions {
            writes.push((key(keys::USED_ASSERTION, k), None));
        }
        for name in &change.delete_scim_connections {
            writes.push((key(keys::SCIM_CONNECTION, name), None));
        }
        for r in &change.scim_resources {
            self.stage_scim_name(r, Some(r), staged, &mut writes)?;
        }
        for r in &change.delete_scim_resources {
            self.stage_scim_name(r, None, staged, &mut writes)?;
            writes.push((record_key(r), None));
        }
        for n in &change.notifications {
            self.stage_notification_indexes(&n.id, Some(n), staged, &mut writes)?;
        }
        for id in &change.delete_notifications {
            self.stage_notification_indexes(id, None, staged, &mut writes)?;
            writes.push((key(keys::NOTIFICATION, id), None));
        }
        for t in &change.tokens {
            writes.push((key(keys::TOKEN, &t.hash), Some(encode(t)?)));
        }
        for h in &change.delete_tokens {
            writes.push((key(keys::TOKEN, h), None));
        }
        for j in &change.unschedule {
            writes.push((keys::job(j), None));
        }
        for j in &change.schedule {
            writes.push((keys::job(j), Some(encode(j)?)));
        }
        crate::outbox::queue::check(&change.commands)?;
        // Everything checked: now take sequence numbers.
        let mut queue = SledQueue {
            store: self,
            staged,
            writes: &mut writes,
            seq: state.outbox_seq,
        };
        crate::outbox::queue::apply(&mut queue, &change.commands, &change.delivered)?;
        let outbox_seq = queue.seq;
        for r in &change.results {
            writes.push((key(keys::RESULT, &r.command), Some(encode(r)?)));
        }
        if let Some(anchor) = &change.audit_anchor {
            let k = keys::AUDIT_ANCHOR.as_bytes();
            let newer = match self.read_staged(staged, k)? {
                Some(bytes) => decode::<AuditAnchor>(k, &bytes)?.seq < anchor.seq,
                None => true,
            };
            if newer {
                writes.push((k.to_vec(), Some(encode(anchor)?)));
            }
        }
        let mut head = state.audit_head.clone();
        for entry in change.audit {
            let (record, next) = head.append(entry);
            writes.push((keys::audit(record.seq), Some(encode(&record)?)));
            head = next;
        }
        state.audit_head = head;
        if outbox_seq != state.outbox_seq {
            writes.push((keys::OUTBOX_SEQ.as_bytes().to_vec(), Some(encode(&outbox_seq)?)));
            state.outbox_seq = outbox_seq;
        }
        staged.extend(writes);
        Ok(committed)
    }

    /// Applies `changes` as one batch; returns each one's result.
    fn apply(&self, changes: Vec<Change>) -> Vec<Result<Committed, StoreError>> {
        let mut state = jitgate_shared::sync::lock(&self.writer);
        let before = (state.audit_head.clone(), state.outbox_seq);
        let mut staged = HashMap::new();
        let results: Vec<_> = changes
            .into_iter()
            .map(|c| self.stage(c, &mut state, &mut staged))
            .collect();
        // The batch writes each key's last staged value.
        let mut batch = sled::Batch::default();
        for (k, v) in staged {
            match v {
                Some(bytes) => batch.insert(k, bytes),
                None => batch.remove(k),
            }
        }
        if let Err(e) = self.db.apply_batch(batch) {
            // Nothing was written: restore the cached counters.
            state.audit_head = before.0;
            state.outbox_seq = before.1;
            let source: super::BackendError = std::sync::Arc::new(e);
            return results
                .into_iter()
                .map(|_| {
                    Err(StoreError::Backend {
                        source: source.clone(),
                    })
                })
                .collect();
        }
        results
    }

    /// Applies `changes` as one batch and makes it durable: each change's
    /// result, and none `Ok` before the flush. Blocks the thread.
    fn write(&self, changes: Vec<Change>) -> Vec<Result<Committed, StoreError>> {
        let results = self.apply(changes);
        if !results.iter().any(Result::is_ok) {
            return results;
        }
        let Err(e) = self.db.flush() else {
            return results;
        };
        let failed: super::BackendError = std::sync::Arc::new(e);
        results
            .into_iter()
            .map(|r| {
                r.and(Err(StoreError::Backend {
                    source: failed.clone(),
                }))
            })
            .collect()
    }
}

/// The layout of the embedded store this broker reads and writes. Raised
/// when a release changes it in a way older brokers cannot read or keep;
/// a store of a newer format is refused at open, one of an older format
/// upgraded (docs/operating.md, upgrading).
///
/// 1. The first marked layout.
/// 2. Grants and requests indexed by user ([`keys::GRANT_USER`],
///    [`keys::REQUEST_REQUESTER`]): an older broker would not keep them.
pub const FORMAT: u32 = 2;

/// The embedded store's directory inside the broker's data directory.
pub const STORE_DIR: &str = "store";

/// The tree holding the store's format, apart from its entries.
const META_TREE: &str = "meta";
const FORMAT_KEY: &str = "format";

/// Refuses a store written by a newer broker; upgrades one of an older
/// format (one unmarked, from before formats were marked, is of format 1)
/// and marks it as of [`FORMAT`].
fn check_format(db: &sled::Db, dir: &Path) -> Result<(), StoreError> {
    let meta = db.open_tree(META_TREE).map_err(backend)?;
    let found = match meta.get(FORMAT_KEY).map_err(backend)? {
        Some(v) => {
            let bytes = <[u8; 4]>::try_from(v.as_ref()).map_err(|_| {
                StoreError::Schema(format!(
                    "store at {}: its format marker is unreadable",
                    dir.display()
                ))
            })?;
            u32::from_be_bytes(bytes)
        }
        // A new store is of this broker's format; one holding entries but
        // no marker is from before formats were marked.
        None if db.is_empty() => FORMAT,
        None => 1,
    };
    if found > FORMAT {
        return Err(StoreError::Schema(format!(
            "store at {} is of format {found}, newer than this broker's ({FORMAT}): a newer jitgate-broker wrote it; run that version, or restore a backup taken before the upgrade (docs/operating.md)",
            dir.display()
        )));
    }
    if found < FORMAT {
        upgrade(db, dir, found)?;
    }
    meta.insert(FORMAT_KEY, &FORMAT.to_be_bytes()).map_err(backend)?;
    db.flush().map_err(backend)?;
    Ok(())
}

/// Brings a store of format `from` to [`FORMAT`], each step in turn. A
/// step only adds what can be built again from the records, so one cut
/// short (the format is marked after) is simply done again at the next
/// open.
fn upgrade(db: &sled::Db, dir: &Path, from: u32) -> Result<(), StoreError> {
    tracing::info!(store = %dir.display(), from, to = FORMAT, "upgrading the store's format");
    if from < 2 {
        for (prefix, kind) in [
            (keys::GRANT, RecordKind::Grant),
            (keys::REQUEST, RecordKind::Request),
        ] {
            let mut batch = sled::Batch::default();
            let mut indexed = 0_u64;
            for kv in db.scan_prefix(prefix) {
                let (k, v) = kv.map_err(backend)?;
                if let Some(entry) = by_user_entry(kind, &k, &v)? {
                    batch.insert(entry, Vec::new());
                }
                indexed += 1;
                if indexed.is_multiple_of(UPGRADE_BATCH) {
                    db.apply_batch(std::mem::take(&mut batch)).map_err(backend)?;
                    tracing::info!(kind = kind.name(), indexed, "indexing by user");
                }
            }
            db.apply_batch(batch).map_err(backend)?;
            tracing::info!(kind = kind.name(), indexed, "indexed by user");
        }
    }
    db.flush().map_err(backend)?;
    Ok(())
}

/// Records an upgrade step writes per batch (and reports progress after).
const UPGRADE_BATCH: u64 = 50_000;

/// The entry of a stored grant or request (key `k`, value `v`) in its
/// index by user; `None` for other kinds.
fn by_user_entry(kind: RecordKind, k: &[u8], v: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(match kind {
        RecordKind::Grant => {
            let g: Grant = decode_versioned(k, v)?;
            Some(keys::grant_user(g.user.as_str(), &g.id.to_string()))
        }
        RecordKind::Request => {
            let r: Request = decode_versioned(k, v)?;
            Some(keys::request_requester(r.requester.as_str(), &r.id.to_string()))
        }
        _ => None,
    })
}

/// Marks the store in `dir` as of `format`, as a newer broker would (for
/// the test that a newer store is refused).
/// Opened without sled's background flusher, so the file lock is let go
/// of when this returns (a store open in the same process right after
/// would otherwise find it held until the flusher's next wake).
pub fn mark_format(dir: &Path, format: u32) -> Result<(), StoreError> {
    let db = sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .open()
        .map_err(backend)?;
    let meta = db.open_tree(META_TREE).map_err(backend)?;
    meta.insert(FORMAT_KEY, &format.to_be_bytes()).map_err(backend)?;
    db.flush().map_err(backend)?;
    Ok(())
}

#[async_trait]
impl Store for SledStore {
    async fn commit(&self, change: Change) -> Result<Committed, StoreError> {
        let mut results = self.commit_all(vec![change]).await;
        results.pop().unwrap_or_else(|| Ok(Committed::default()))
    }

    /// Commits `changes` together with concurrent writers' (see
    /// [`commit_queue`]).
    async fn commit_all(&self, changes: Vec<Change>) -> Vec<Result<Committed, StoreError>> {
        let n = changes.len();
        self.commits
            .commit(changes, |all| {
                jitgate_shared::blocking::in_place(|| self.write(all))
            })
            .await
            .unwrap_or_else(|| {
                let lost: super::BackendError = std::sync::Arc::new(std::io::Error::other(
                    "the writer carrying this change failed; whether it was written is unknown",
                ));
                (0..n)
                    .map(|_| Err(StoreError::Backend { source: lost.clone() }))
                    .collect()
            })
    }

    async fn configuration(&self, id: &ConfigId) -> Result<Option<StoredConfiguration>, StoreError> {
        self.get_versioned(&key(keys::CONFIG, id))
    }

    async fn configurations(&self) -> Result<Vec<StoredConfiguration>, StoreError> {
        self.scan_versioned(keys::CONFIG)
    }

    async fn resource(&self, id: &ResourceId) -> Result<Option<StoredResource>, StoreError> {
        self.get_versioned(&key(keys::RESOURCE, id))
    }

    async fn resources(&self) -> Result<Vec<StoredResource>, StoreError> {
        self.scan_versioned(keys::RESOURCE)
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.get_versioned(&key(keys::USER, id))
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.scan_versioned(keys::USER)
    }

    async fn token(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        self.get(&key(keys::TOKEN, hash))
    }

    async fn tokens(&self, filter: &TokenFilter) -> Result<Vec<ApiToken>, StoreError> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(keys::TOKEN) {
            let (k, v) = kv.map_err(backend)?;
            let token: ApiToken = decode(&k, &v)?;
            if filter.matches(&token) {
                out.push(token);
            }
        }
        Ok(out)
    }

    async fn pending_login(&self, login_key: &str) -> Result<Option<PendingLogin>, StoreError> {
        self.get_versioned(&key(keys::PENDING_LOGIN, login_key))
    }

    async fn expired_logins(&self, before: DateTime<Utc>) -> Result<Vec<PendingLogin>, StoreError> {
        Ok(self
            .scan_versioned::<PendingLogin>(keys::PENDING_LOGIN)?
            .into_iter()
            .filter(|p| p.expires_at < before)
            .collect())
    }

    async fn expired_assertions(&self, before: DateTime<Utc>) -> Result<Vec<UsedAssertion>, StoreError> {
        let all: Vec<UsedAssertion> = self.scan_versioned(keys::USED_ASSERTION)?;
        Ok(all.into_iter().filter(|a| a.expires_at < before).collect())
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.get_versioned(&key(keys::SESSION, id))
    }

    async fn sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        Ok(self
            .scan_versioned::<Session>(keys::SESSION)?
            .into_iter()
            .filter(|s| filter.matches(s))
            .collect())
    }

    async fn scim_connection(&self, name: &str) -> Result<Option<ScimConnection>, StoreError> {
        self.get_versioned(&key(keys::SCIM_CONNECTION, name))
    }

    async fn scim_connections(&self) -> Result<Vec<ScimConnection>, StoreError> {
        self.scan_versioned(keys::SCIM_CONNECTION)
    }

    async fn scim_resource(
        &self,
        connection: &str,
        kind: ScimKind,
        id: &str,
    ) -> Result<Option<ScimResource>, StoreError> {
        let scope = keys::scim_scope(connection, kind);
        self.get_versioned(&key(keys::SCIM_RESOURCE, format!("{scope}{id}")))
    }

    async fn scim_named(
        &self,
        connection: &str,
        kind: ScimKind,
        name: &str,
    ) -> Result<Vec<ScimResource>, StoreError> {
        let prefix = keys::scim_name_prefix(connection, kind, &name.to_lowercase());
        let scope = keys::scim_scope(connection, kind);
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(&prefix) {
            let (k, _) = kv.map_err(backend)?;
            let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(r) = self.get_versioned(&key(keys::SCIM_RESOURCE, format!("{scope}{id}")))? {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn scim_resources(
        &self,
        connection: &str,
        kind: ScimKind,
        filter: &ScimFilter,
    ) -> Result<Vec<ScimResource>, StoreError> {
        let prefix = format!("{}{}", keys::SCIM_RESOURCE, keys::scim_scope(connection, kind));
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(backend)?;
            let r: ScimResource = decode_versioned(&k, &v)?;
            if filter.matches(&r) {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn request(&self, id: RequestId) -> Result<Option<Request>, StoreError> {
        self.get_versioned(&key(keys::REQUEST, id))
    }

    async fn requests(&self, page: &PageQuery, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        // Only the head of each request is read to decide; a head that
        // does not decode is decoded whole, which names what is wrong.
        let head_matches = |body: &[u8]| {
            serde_json::from_slice::<super::query::RequestHead>(body)
                .map_or(true, |h| filter.matches_head(&h))
        };
        match &filter.requester {
            Some(requester) => self.page_indexed(
                &keys::requests_of(requester.as_str()),
                keys::REQUEST,
                page,
                head_matches,
                |r| filter.matches(r),
            ),
            None => self.page_where(keys::REQUEST, page, head_matches, |r| filter.matches(r)),
        }
    }

    async fn grant(&self, id: GrantId) -> Result<Option<Grant>, StoreError> {
        self.get_versioned(&key(keys::GRANT, id))
    }

    async fn grants(&self, page: &PageQuery, filter: &GrantFilter) -> Result<Vec<Grant>, StoreError> {
        match &filter.user {
            Some(user) => self.page_indexed(
                &keys::grants_of(user.as_str()),
                keys::GRANT,
                page,
                |_| true,
                |g| filter.matches(g),
            ),
            None => self.page(keys::GRANT, page, |g| filter.matches(g)),
        }
    }

    async fn lease(&self, lease_key: &str) -> Result<Option<Lease>, StoreError> {
        self.get_versioned(&key(keys::LEASE, lease_key))
    }

    async fn held_leases(&self, configuration: &ConfigId) -> Result<Vec<Lease>, StoreError> {
        Ok(self
            .scan_versioned::<Lease>(keys::LEASE)?
            .into_iter()
            .filter(|l| l.is_held() && &l.entitlement.configuration == configuration)
            .collect())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.db.scan_prefix(keys::JOB).next() {
            Some(kv) => {
                let (k, v) = kv.map_err(backend)?;
                Ok(Some(decode::<Job>(&k, &v)?.due))
            }
            None => Ok(None),
        }
    }

    async fn due_jobs(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, StoreError> {
        // Keys carry milliseconds; a job later in `now`'s millisecond is not
        // due yet, so compare the full instant too.
        let mut due = Vec::new();
        for kv in self
            .db
            .range(keys::JOB.as_bytes().to_vec()..keys::jobs_due_until(now))
        {
            let (k, v) = kv.map_err(backend)?;
            let job: Job = decode(&k, &v)?;
            if job.due <= now {
                due.push(job);
                if due.len() >= limit {
                    break;
                }
            }
        }
        Ok(due)
    }

    async fn cursor(&self, name: &str) -> Result<Option<Cursor>, StoreError> {
        self.get_versioned(&key(keys::CURSOR, name))
    }

    async fn last_contacts(&self) -> Result<Vec<LastContact>, StoreError> {
        self.scan_versioned(keys::LAST_CONTACT)
    }

    async fn notification(&self, id: &str) -> Result<Option<Notification>, StoreError> {
        self.get_versioned(&key(keys::NOTIFICATION, id))
    }

    async fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut due = Vec::new();
        let range = keys::NOTIFICATION_DUE.as_bytes().to_vec()..keys::notifications_due_until(now);
        for kv in self.db.range(range).take(limit) {
            let (k, _) = kv.map_err(backend)?;
            let id = keys::notification_of_due(&k).ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                source: std::sync::Arc::new(std::io::Error::other("not a notification's due entry")),
            })?;
            // An entry whose notification moved on meanwhile is skipped.
            if let Some(n) = self.get_versioned::<Notification>(&key(keys::NOTIFICATION, id))? {
                if n.due.is_some_and(|d| d <= now) {
                    due.push(n);
                }
            }
        }
        Ok(due)
    }

    async fn notifications_about(&self, request: RequestId) -> Result<Vec<Notification>, StoreError> {
        let prefix = format!("{}{request}/", keys::NOTIFICATION_REQUEST);
        let mut found = Vec::new();
        for kv in self.db.scan_prefix(prefix.as_bytes()) {
            let (k, _) = kv.map_err(backend)?;
            let Some(id) = k.get(prefix.len()..).and_then(|id| std::str::from_utf8(id).ok()) else {
                continue;
            };
            if let Some(n) = self.get_versioned(&key(keys::NOTIFICATION, id))? {
                found.push(n);
            }
        }
        Ok(found)
    }

    async fn notifications(&self) -> Result<Vec<Notification>, StoreError> {
        self.scan_versioned(keys::NOTIFICATION)
    }

    async fn job_count(&self) -> Result<usize, StoreError> {
        Ok(self.db.scan_prefix(keys::JOB).count())
    }

    async fn outbox(&self, configuration: &ConfigId, limit: usize) -> Result<Vec<Command>, StoreError> {
        self.db
            .scan_prefix(keys::outbox_prefix(configuration.as_str()))
            .take(limit)
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                decode(&k, &v)
            })
            .collect()
    }

    async fn queued_command(&self, id: &str) -> Result<Option<Command>, StoreError> {
        let Some(outbox_key) = self.db.get(key(keys::OUTBOX_ID, id)).map_err(backend)? else {
            return Ok(None);
        };
        if outbox_key.is_empty() {
            return Ok(None);
        }
        self.get(&outbox_key)
    }

    async fn command_result(&self, id: &str) -> Result<Option<CommandResult>, StoreError> {
        self.get(&key(keys::RESULT, id))
    }

    async fn join_token(&self, hash: &str) -> Result<Option<JoinToken>, StoreError> {
        self.get_versioned(&key(keys::JOIN_TOKEN, hash))
    }

    async fn agent(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        self.get_versioned(&key(keys::AGENT, id))
    }

    async fn agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.scan_versioned(keys::AGENT)
    }

    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        Ok(jitgate_shared::sync::lock(&self.writer).audit_head.clone())
    }

    async fn audit_anchor(&self) -> Result<Option<AuditAnchor>, StoreError> {
        self.get(keys::AUDIT_ANCHOR.as_bytes())
    }

    async fn dump(&self, sink: &mut dyn super::dump::DumpSink) -> Result<(), StoreError> {
        self.dump_into(sink).await
    }

    async fn load(&self, entries: Vec<super::dump::Entry>) -> Result<(), StoreError> {
        jitgate_shared::blocking::in_place(|| self.load_entries(entries))
    }

    fn embedded(&self) -> Option<&SledStore> {
        Some(self)
    }

    async fn entry_count(&self) -> Result<u64, StoreError> {
        Ok(self.db.len() as u64)
    }

    async fn audit(&self, from: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        self.db
            .range(keys::audit(from)..keys::prefix_end(keys::AUDIT.as_bytes()))
            .take(limit)
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                decode(&k, &v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
