//! Dumping the embedded store as [`Entry`]s and loading entries into an
//! empty one, its indexes (outbox positions, SCIM names, counters) rebuilt.

use std::collections::HashSet;

use super::{
    backend, by_user_entry, corrupt, decode, decode_versioned, encode, version_of, SledStore, VERSION_LEN,
};
use crate::audit::AuditHead;
use crate::identity::scim::ScimResource;
use crate::store::dump::{DumpSink, Entry, RecordKindName, PAGE};
use crate::store::keys::{self, key};
use crate::store::{RecordKind, StoreError};

/// The entry a key holds; `None` for index keys, which loads rebuild.
pub(super) fn entry(k: &[u8], v: &[u8]) -> Result<Option<Entry>, StoreError> {
    let text = std::str::from_utf8(k).map_err(|_| corrupt(k, "key is not UTF-8"))?;
    for kind in RecordKind::ALL {
        if let Some(id) = text.strip_prefix(keys::record_prefix(kind)) {
            let version = version_of(k, v)?;
            let json =
                std::str::from_utf8(&v[VERSION_LEN..]).map_err(|_| corrupt(k, "record is not UTF-8"))?;
            return Ok(Some(Entry::Record {
                kind: RecordKindName(kind),
                id: id.to_owned(),
                version,
                json: json.to_owned(),
            }));
        }
    }
    let prefixed = |p: &str| text.starts_with(p);
    Ok(Some(if prefixed(keys::TOKEN) {
        Entry::Token(decode(k, v)?)
    } else if prefixed(keys::JOB) {
        Entry::Job(decode(k, v)?)
    } else if prefixed(keys::OUTBOX) {
        // o/{configuration}/{priority}/{seq}
        let mut parts = text.rsplitn(3, '/');
        let seq = parts.next().and_then(|s| s.parse().ok());
        let priority = parts.next().and_then(|p| p.parse().ok());
        let (Some(seq), Some(priority)) = (seq, priority) else {
            return Err(corrupt(k, "outbox key without priority and sequence"));
        };
        Entry::Queued {
            priority,
            seq,
            command: decode(k, v)?,
        }
    } else if let Some(id) = text.strip_prefix(keys::OUTBOX_ID) {
        Entry::Known { id: id.to_owned() }
    } else if prefixed(keys::RESULT) {
        Entry::Result(decode(k, v)?)
    } else if prefixed(keys::AUDIT) {
        Entry::Audit(decode(k, v)?)
    } else if text == keys::AUDIT_ANCHOR {
        Entry::Anchor(decode(k, v)?)
    } else if prefixed(keys::OUTBOX_ENTITLEMENT)
        || prefixed(keys::SCIM_NAME)
        || prefixed(keys::NOTIFICATION_DUE)
        || prefixed(keys::NOTIFICATION_REQUEST)
        || prefixed(keys::GRANT_USER)
        || prefixed(keys::REQUEST_REQUESTER)
        || text == keys::OUTBOX_SEQ
    {
        return Ok(None);
    } else {
        return Err(corrupt(k, "a key of no known kind"));
    }))
}

impl SledStore {
    pub(super) async fn dump_into(&self, sink: &mut dyn DumpSink) -> Result<(), StoreError> {
        // A page of keys at a time, read before the sink is awaited: no
        // iterator is held across an await.
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mut page = Vec::with_capacity(PAGE);
            let mut last = None;
            for kv in self.db.range(from.clone()..).take(PAGE) {
                let (k, v) = kv.map_err(backend)?;
                if let Some(e) = entry(&k, &v)? {
                    page.push(e);
                }
                last = Some(k);
            }
            let Some(last) = last else { return Ok(()) };
            if !page.is_empty() {
                sink.put(page).await?;
            }
            // The smallest key after `last`.
            from = last.to_vec();
            from.push(0);
        }
    }

    pub(super) fn load_entries(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut state = jitgate_shared::sync::lock(&self.writer);
        let mut batch = sled::Batch::default();
        let mut queued: HashSet<String> = HashSet::new();
        let mut outbox_seq = state.outbox_seq;
        let mut head: Option<AuditHead> = None;
        for e in &entries {
            if let Entry::Queued { command, .. } = e {
                queued.insert(command.id.clone());
            }
        }
        for e in entries {
            match e {
                Entry::Record {
                    kind,
                    id,
                    version,
                    json,
                } => {
                    let k = key(keys::record_prefix(kind.0), &id);
                    let mut v = version.to_be_bytes().to_vec();
                    v.extend_from_slice(json.as_bytes());
                    if kind.0 == RecordKind::Notification {
                        let n: crate::notify::queue::Notification = decode_versioned(&k, &v)?;
                        if let Some(due) = n.due {
                            batch.insert(keys::notification_due(due, &n.id), Vec::new());
                        }
                        if let Some(request) = n.event.request_id() {
                            batch.insert(
                                keys::notification_request(&request.to_string(), &n.id),
                                Vec::new(),
                            );
                        }
                    }
                    if let Some(entry) = by_user_entry(kind.0, &k, &v)? {
                        batch.insert(entry, Vec::new());
                    }
                    if kind.0 == RecordKind::ScimResource {
                        let r: ScimResource = decode_versioned(&k, &v)?;
                        if let Some(name) = r.index_name() {
                            batch.insert(keys::scim_name(&r.connection, r.kind, &name, &r.id), Vec::new());
                        }
                    }
                    batch.insert(k, v);
                }
                Entry::Token(t) => batch.insert(key(keys::TOKEN, &t.hash), encode(&t)?),
                Entry::Job(j) => batch.insert(keys::job(&j), encode(&j)?),
                Entry::Queued {
                    priority,
                    seq,
                    command,
                } => {
                    let configuration = command.entitlement.configuration.as_str();
                    let at = keys::outbox(configuration, priority, seq);
                    batch.insert(key(keys::OUTBOX_ID, &command.id), at.clone());
                    batch.insert(
                        keys::outbox_entitlement(configuration, &command.entitlement.digest()),
                        at.clone(),
                    );
                    batch.insert(at, encode(&command)?);
                    outbox_seq = outbox_seq.max(seq);
                }
                Entry::Known { id } => {
                    let k = key(keys::OUTBOX_ID, &id);
                    // A queued command's id points at its entry; only a
                    // command no longer queued is known by id alone.
                    if !queued.contains(&id) && self.db.get(&k).map_err(backend)?.is_none() {
                        batch.insert(k, Vec::new());
                    }
                }
                Entry::Result(r) => batch.insert(key(keys::RESULT, &r.command), encode(&r)?),
                Entry::Audit(r) => {
                    if head.as_ref().is_none_or(|h| r.seq > h.seq) {
                        head = Some(AuditHead {
                            seq: r.seq,
                            hash: r.hash.clone(),
                        });
                    }
                    batch.insert(keys::audit(r.seq), encode(&r)?);
                }
                Entry::Anchor(a) => batch.insert(keys::AUDIT_ANCHOR.as_bytes(), encode(&a)?),
            }
        }
        batch.insert(keys::OUTBOX_SEQ.as_bytes(), encode(&outbox_seq)?);
        self.db.apply_batch(batch).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        state.outbox_seq = outbox_seq;
        if let Some(head) = head.filter(|h| h.seq > state.audit_head.seq) {
            state.audit_head = head;
        }
        Ok(())
    }
}
