//! Commits on PostgreSQL: one transaction per call, a savepoint per change
//! when several go together (each may fail alone), one `COMMIT` (one WAL
//! flush) for all.
//!
//! Records are written with compare-and-set on their version; the outbox
//! follows the shared [queue rules](crate::outbox::queue) over the rows the
//! change can touch, read first; the audit chain is extended under the
//! one `audit_head` row, locked until commit, so every broker appends to
//! one chain in commit order.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{Pool, Transaction};

use super::json::{JsonIn, JsonOut};
use super::{decode, i64_of, pg_error, table, u64_of};
use crate::audit::AuditHead;
use crate::outbox::queue::{self, QueueBackend};
use crate::outbox::Command;
use crate::store::{Change, Committed, Record, StoreError, Versioned};

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::backend)
}

/// Commits `changes` in one transaction; each one's result.
pub(super) async fn commit_all(
    pool: &Pool,
    me: &str,
    changes: Vec<Change>,
) -> Vec<Result<Committed, StoreError>> {
    let n = changes.len();
    let all = |e: StoreError| (0..n).map(|_| Err(e.clone())).collect();
    let mut client = match pool.get().await {
        Ok(c) => c,
        Err(e) => return all(pg_error(e)),
    };
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(e) => return all(pg_error(e)),
    };
    let mut results = Vec::with_capacity(n);
    for change in changes {
        if n == 1 {
            results.push(apply(&tx, me, change).await);
            continue;
        }
        if let Err(e) = tx.batch_execute("SAVEPOINT change").await {
            return all(pg_error(e));
        }
        let outcome = apply(&tx, me, change).await;
        let end = if outcome.is_ok() {
            "RELEASE SAVEPOINT change"
        } else {
            "ROLLBACK TO SAVEPOINT change"
        };
        if let Err(e) = tx.batch_execute(end).await {
            return all(pg_error(e));
        }
        results.push(outcome);
    }
    if !results.iter().any(Result::is_ok) {
        // Nothing to keep; dropping the transaction rolls it back.
        return results;
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => {
            let e = pg_error(e);
            results.into_iter().map(|r| r.and(Err(e.clone()))).collect()
        }
    }
}

/// Writes one change inside the transaction, or fails leaving the
/// transaction for the caller to roll back.
async fn apply(tx: &Transaction<'_>, me: &str, change: Change) -> Result<Committed, StoreError> {
    // Refused whole before anything is written: a record written twice,
    // two commands for one entitlement.
    let mut seen = HashSet::new();
    for r in change.records() {
        if !seen.insert((r.kind(), r.id())) {
            return Err(StoreError::WrittenTwice {
                record: r.kind().name(),
                id: r.id(),
            });
        }
    }
    queue::check(&change.commands)?;

    let mut committed = Committed::default();
    for record in change.records() {
        let version = write_record(tx, record).await?;
        committed.wrote(record.kind(), record.id(), version);
    }
    for r in &change.scim_resources {
        let sql = "UPDATE scim_resources SET name = $2 WHERE id = $1";
        execute(tx, sql, &[&Versioned::id(r), &r.index_name()]).await?;
    }
    for r in &change.delete_scim_resources {
        execute(
            tx,
            "DELETE FROM scim_resources WHERE id = $1",
            &[&Versioned::id(r)],
        )
        .await?;
    }
    for key in &change.delete_pending_logins {
        execute(tx, "DELETE FROM pending_logins WHERE id = $1", &[key]).await?;
    }
    for name in &change.delete_scim_connections {
        execute(tx, "DELETE FROM scim_connections WHERE id = $1", &[name]).await?;
    }
    for t in &change.tokens {
        let sql = "INSERT INTO tokens (hash, doc) VALUES ($1, $2) \
                   ON CONFLICT (hash) DO UPDATE SET doc = EXCLUDED.doc";
        execute(tx, sql, &[&t.hash, &JsonOut(&encode(t)?)]).await?;
    }
    for hash in &change.delete_tokens {
        execute(tx, "DELETE FROM tokens WHERE hash = $1", &[hash]).await?;
    }
    for j in &change.unschedule {
        let sql = "DELETE FROM jobs WHERE due = $1 AND kind = $2 AND subject = $3";
        execute(tx, sql, &[&j.due, &j.kind.name(), &j.kind.subject()]).await?;
    }
    for j in &change.schedule {
        let sql = "INSERT INTO jobs (due, kind, subject, doc) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (due, kind, subject) DO UPDATE SET doc = EXCLUDED.doc";
        let doc = encode(j)?;
        execute(
            tx,
            sql,
            &[&j.due, &j.kind.name(), &j.kind.subject(), &JsonOut(&doc)],
        )
        .await?;
    }
    queue_commands(tx, me, &change.commands, &change.delivered).await?;
    for r in &change.results {
        let sql = "INSERT INTO command_results (command_id, doc) VALUES ($1, $2) \
                   ON CONFLICT (command_id) DO UPDATE SET doc = EXCLUDED.doc";
        execute(tx, sql, &[&r.command, &JsonOut(&encode(r)?)]).await?;
    }
    if let Some(anchor) = &change.audit_anchor {
        // An older anchor than the stored one is ignored.
        let sql = "INSERT INTO audit_anchor (seq, doc) VALUES ($1, $2) \
                   ON CONFLICT (one) DO UPDATE SET seq = EXCLUDED.seq, doc = EXCLUDED.doc \
                   WHERE audit_anchor.seq < EXCLUDED.seq";
        execute(tx, sql, &[&i64_of(anchor.seq)?, &JsonOut(&encode(anchor)?)]).await?;
    }
    if !change.audit.is_empty() {
        // Last: the head's row lock is held from here to the commit.
        let row = query_one(tx, "SELECT seq, hash FROM audit_head FOR UPDATE", &[]).await?;
        let mut head = AuditHead {
            seq: u64_of(row.get(0)),
            hash: row.get(1),
        };
        for entry in change.audit {
            let (record, next) = head.append(entry);
            let sql = "INSERT INTO audit (seq, doc) VALUES ($1, $2)";
            execute(tx, sql, &[&i64_of(record.seq)?, &JsonOut(&encode(&record)?)]).await?;
            head = next;
        }
        let sql = "UPDATE audit_head SET seq = $1, hash = $2";
        execute(tx, sql, &[&i64_of(head.seq)?, &head.hash]).await?;
    }
    Ok(committed)
}

type Params<'a> = [&'a (dyn tokio_postgres::types::ToSql + Sync)];

async fn execute(tx: &Transaction<'_>, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.execute(&statement, params).await.map_err(pg_error)
}

async fn query_one(
    tx: &Transaction<'_>,
    sql: &str,
    params: &Params<'_>,
) -> Result<tokio_postgres::Row, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.query_one(&statement, params).await.map_err(pg_error)
}

async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(pg_error)?;
    tx.query(&statement, params).await.map_err(pg_error)
}

/// Compare-and-set: the stored version must still be the one the record
/// was read at (none stored for 0); the next one is written.
async fn write_record(tx: &Transaction<'_>, record: &dyn Record) -> Result<u64, StoreError> {
    let table = table(record.kind());
    let (read, id) = (record.version(), record.id());
    let next = read + 1;
    let mut doc = Vec::with_capacity(512);
    record
        .write_json_at(next, &mut doc)
        .map_err(StoreError::backend)?;
    let written = if read == 0 {
        let sql =
            format!("INSERT INTO {table} (id, version, doc) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING");
        execute(tx, &sql, &[&id, &i64_of(next)?, &JsonOut(&doc)]).await?
    } else {
        let sql = format!("UPDATE {table} SET version = $2, doc = $3 WHERE id = $1 AND version = $4");
        execute(tx, &sql, &[&id, &i64_of(next)?, &JsonOut(&doc), &i64_of(read)?]).await?
    };
    if written == 1 {
        return Ok(next);
    }
    let sql = format!("SELECT version FROM {table} WHERE id = $1");
    let found = query(tx, &sql, &[&id])
        .await?
        .first()
        .map(|row| u64_of(row.get(0)))
        .unwrap_or(0);
    Err(StoreError::Conflict {
        record: record.kind().name(),
        id,
        expected: read,
        found,
    })
}

/// The outbox rows a change can touch, read first; the queue rules run
/// over them in memory and say what to write.
#[derive(Default)]
struct PgQueue {
    known: HashSet<String>,
    queued: HashMap<String, Command>,
    /// Entitlement digest → id of the command queued for it.
    by_entitlement: HashMap<String, String>,
    writes: Vec<QueueWrite>,
}

enum QueueWrite {
    Remove(String),
    Append(Box<Command>, u8),
}

impl PgQueue {
    fn hold(&mut self, command: Command) {
        self.by_entitlement
            .insert(command.entitlement.digest(), command.id.clone());
        self.queued.insert(command.id.clone(), command);
    }
}

impl QueueBackend for PgQueue {
    fn known(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(self.known.contains(id))
    }

    fn queued(&mut self, id: &str) -> Result<Option<Command>, StoreError> {
        Ok(self.queued.get(id).cloned())
    }

    fn queued_for(&mut self, e: &jitgate_shared::v1::Entitlement) -> Result<Option<Command>, StoreError> {
        Ok(self
            .by_entitlement
            .get(&e.digest())
            .and_then(|id| self.queued.get(id))
            .cloned())
    }

    fn remove(&mut self, command: &Command) -> Result<(), StoreError> {
        if self.queued.remove(&command.id).is_some() {
            let digest = command.entitlement.digest();
            if self.by_entitlement.get(&digest) == Some(&command.id) {
                self.by_entitlement.remove(&digest);
            }
            self.writes.push(QueueWrite::Remove(command.id.clone()));
        }
        Ok(())
    }

    fn append(&mut self, command: &Command, priority: u8) -> Result<(), StoreError> {
        self.known.insert(command.id.clone());
        self.hold(command.clone());
        self.writes
            .push(QueueWrite::Append(Box::new(command.clone()), priority));
        Ok(())
    }
}

async fn queue_commands(
    tx: &Transaction<'_>,
    me: &str,
    commands: &[Command],
    settled: &[String],
) -> Result<(), StoreError> {
    if commands.is_empty() && settled.is_empty() {
        return Ok(());
    }
    let mut q = PgQueue::default();
    let ids: Vec<&str> = commands.iter().map(|c| c.id.as_str()).collect();
    if !ids.is_empty() {
        for row in query(tx, "SELECT id FROM command_ids WHERE id = ANY($1)", &[&ids]).await? {
            q.known.insert(row.get(0));
        }
    }
    let touched: Vec<&str> = settled.iter().map(String::as_str).chain(ids).collect();
    let digests: Vec<String> = commands.iter().map(|c| c.entitlement.digest()).collect();
    let sql = "SELECT doc FROM outbox WHERE command_id = ANY($1) OR entitlement = ANY($2)";
    for row in query(tx, sql, &[&touched, &digests]).await? {
        q.hold(decode("outbox", row.get::<_, JsonIn>(0).0)?);
    }
    queue::apply(&mut q, commands, settled)?;
    let mut announce = std::collections::BTreeSet::new();
    for write in q.writes {
        match write {
            QueueWrite::Remove(id) => {
                execute(tx, "DELETE FROM outbox WHERE command_id = $1", &[&id]).await?;
            }
            QueueWrite::Append(command, priority) => {
                announce.insert(command.entitlement.configuration.as_str().to_owned());
                execute(tx, "INSERT INTO command_ids (id) VALUES ($1)", &[&command.id]).await?;
                let sql = "INSERT INTO outbox (configuration, priority, entitlement, command_id, doc) \
                           VALUES ($1, $2, $3, $4, $5)";
                execute(
                    tx,
                    sql,
                    &[
                        &command.entitlement.configuration.as_str(),
                        &i16::from(priority),
                        &command.entitlement.digest(),
                        &command.id,
                        &JsonOut(&encode(&*command)?),
                    ],
                )
                .await?;
            }
        }
    }
    // Delivered to the listening brokers when (and if) this commits.
    for configuration in announce {
        let payload = super::notify::payload(&configuration, me);
        let sql = "SELECT pg_notify($1, $2)";
        query(tx, sql, &[&super::notify::CHANNEL, &payload]).await?;
    }
    Ok(())
}
