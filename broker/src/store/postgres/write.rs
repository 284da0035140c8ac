//! Commits on PostgreSQL: one transaction per call, a savepoint per change
//! when several go together (each may fail alone), one `COMMIT` (one WAL
//! flush) for all.
//!
//! Records are written with compare-and-set on their version; the outbox
//! follows the shared [queue rules](crate::outbox::queue) over the rows the
//! change can touch, read first; the audit chain is extended under the
//! one `audit_head` row, locked until commit, so every broker appends to
//! one chain in commit order. The head is locked last, after every row of
//! every change in the transaction is written: a transaction holding it
//! waits for nothing but its commit, so two never deadlock over it (the
//! 1-hour soak with three brokers saw deadlocks when a batch locked the
//! head for its first change and went on to write rows for the next).

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{Pool, Transaction};

use super::json::{JsonIn, JsonOut};
use super::{decode, encode, i64_of, pg_error, table, u64_of};
use crate::audit::{AuditEntry, AuditHead};
use crate::outbox::queue::{self, QueueBackend};
use crate::outbox::Command;
use crate::store::changed::Changed;
use crate::store::{Change, Committed, Record, StoreError, Versioned};

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
    // The audit entries of the changes that were written, in order.
    let mut audit = Vec::new();
    for mut change in changes {
        let entries = std::mem::take(&mut change.audit);
        if n == 1 {
            let outcome = apply(&tx, me, change).await;
            if outcome.is_ok() {
                audit = entries;
            }
            results.push(outcome);
            continue;
        }
        if let Err(e) = tx.batch_execute("SAVEPOINT change").await {
            return all(pg_error(e));
        }
        let outcome = apply(&tx, me, change).await;
        let end = if outcome.is_ok() {
            audit.extend(entries);
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
    if let Err(e) = append_audit(&tx, audit).await {
        return all(e);
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
    // Told to the other brokers when (and if) this commits, for their
    // live pages.
    let announce = Changed::of(&change).map(|c| super::notify::change_payload(&c, me));
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

    // First, together: every record and every write that depends on no
    // other of this change.
    let records: Vec<&dyn Record> = change.records().collect();
    let mut first: Vec<Step<'_>> = Vec::new();
    for key in &change.delete_pending_logins {
        first.push(Box::pin(async move {
            execute(tx, "DELETE FROM pending_logins WHERE id = $1", &[key]).await
        }));
    }
    for key in &change.delete_used_assertions {
        first.push(Box::pin(async move {
            execute(tx, "DELETE FROM used_assertions WHERE id = $1", &[key]).await
        }));
    }
    for id in &change.delete_notifications {
        first.push(Box::pin(async move {
            execute(tx, "DELETE FROM notifications WHERE id = $1", &[id]).await
        }));
    }
    for name in &change.delete_scim_connections {
        first.push(Box::pin(async move {
            execute(tx, "DELETE FROM scim_connections WHERE id = $1", &[name]).await
        }));
    }
    for t in &change.tokens {
        let sql = "INSERT INTO tokens (hash, doc) VALUES ($1, $2) \
                   ON CONFLICT (hash) DO UPDATE SET doc = EXCLUDED.doc";
        let doc = encode(t)?;
        first.push(Box::pin(async move {
            execute(tx, sql, &[&t.hash, &JsonOut(&doc)]).await
        }));
    }
    for j in &change.unschedule {
        let sql = "DELETE FROM jobs WHERE due = $1 AND kind = $2 AND subject = $3";
        first.push(Box::pin(async move {
            execute(tx, sql, &[&j.due, &j.kind.name(), &j.kind.subject()]).await
        }));
    }
    for r in &change.results {
        let sql = "INSERT INTO command_results (command_id, doc) VALUES ($1, $2) \
                   ON CONFLICT (command_id) DO UPDATE SET doc = EXCLUDED.doc";
        let doc = encode(r)?;
        first.push(Box::pin(async move {
            execute(tx, sql, &[&r.command, &JsonOut(&doc)]).await
        }));
    }
    if let Some(anchor) = &change.audit_anchor {
        // An older anchor than the stored one is ignored.
        let sql = "INSERT INTO audit_anchor (seq, doc) VALUES ($1, $2) \
                   ON CONFLICT (one) DO UPDATE SET seq = EXCLUDED.seq, doc = EXCLUDED.doc \
                   WHERE audit_anchor.seq < EXCLUDED.seq";
        let (seq, doc) = (i64_of(anchor.seq)?, encode(anchor)?);
        first.push(Box::pin(async move {
            execute(tx, sql, &[&seq, &JsonOut(&doc)]).await
        }));
    }
    let written = records.iter().map(|r| write_record(tx, *r));
    let (versions, others) = tokio::join!(together(written), together(first));
    let versions = versions?;
    others?;
    let mut committed = Committed::default();
    for (record, version) in records.iter().zip(versions) {
        committed.wrote(record.kind(), record.id(), version);
    }

    // Then what follows those writes: names of the SCIM resources written,
    // deletions after writes (as the embedded store orders them), jobs
    // after the jobs they replace, and the outbox.
    let mut then: Vec<Step<'_>> = Vec::new();
    for r in &change.scim_resources {
        let sql = "UPDATE scim_resources SET name = $2 WHERE id = $1";
        then.push(Box::pin(async move {
            execute(tx, sql, &[&Versioned::id(r), &r.index_name()]).await
        }));
    }
    for r in &change.delete_scim_resources {
        let sql = "DELETE FROM scim_resources WHERE id = $1";
        then.push(Box::pin(
            async move { execute(tx, sql, &[&Versioned::id(r)]).await },
        ));
    }
    for hash in &change.delete_tokens {
        then.push(Box::pin(async move {
            execute(tx, "DELETE FROM tokens WHERE hash = $1", &[hash]).await
        }));
    }
    if let Some(payload) = &announce {
        then.push(Box::pin(async move {
            execute(
                tx,
                "SELECT pg_notify($1, $2)",
                &[&super::notify::CHANGES, payload],
            )
            .await
        }));
    }
    for j in &change.schedule {
        let sql = "INSERT INTO jobs (due, kind, subject, doc) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (due, kind, subject) DO UPDATE SET doc = EXCLUDED.doc";
        let doc = encode(j)?;
        then.push(Box::pin(async move {
            execute(
                tx,
                sql,
                &[&j.due, &j.kind.name(), &j.kind.subject(), &JsonOut(&doc)],
            )
            .await
        }));
    }
    let (then, queued) = tokio::join!(
        together(then),
        queue_commands(tx, me, &change.commands, &change.delivered)
    );
    then?;
    queued?;

    Ok(committed)
}

/// Appends `entries` to the audit chain, last in the transaction: the
/// head's row lock is held from here to the commit.
async fn append_audit(tx: &Transaction<'_>, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let row = query_one(tx, "SELECT seq, hash FROM audit_head FOR UPDATE", &[]).await?;
    let mut head = AuditHead {
        seq: u64_of(row.get(0)),
        hash: row.get(1),
    };
    let mut appended = Vec::with_capacity(entries.len());
    for entry in entries {
        let (record, next) = head.append(entry);
        appended.push((i64_of(record.seq)?, encode(&record)?));
        head = next;
    }
    let (seq, hash) = (i64_of(head.seq)?, head.hash);
    let mut last: Vec<Step<'_>> = Vec::new();
    for (seq, doc) in &appended {
        let sql = "INSERT INTO audit (seq, doc) VALUES ($1, $2)";
        last.push(Box::pin(
            async move { execute(tx, sql, &[seq, &JsonOut(doc)]).await },
        ));
    }
    let sql = "UPDATE audit_head SET seq = $1, hash = $2";
    let (seq, hash) = (&seq, &hash);
    last.push(Box::pin(async move { execute(tx, sql, &[seq, hash]).await }));
    together(last).await.map(drop)
}

/// A statement of a change, not yet sent.
type Step<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, StoreError>> + Send + 'a>>;

/// Runs statements that do not depend on one another together: the
/// connection pipelines them (the server runs them one after another, in
/// the order they arrive), so a change costs a few round trips, not one
/// per statement. Their results, in order; the first failure that caused
/// the others (a failed statement aborts the rest of the transaction).
async fn together<T>(
    steps: impl IntoIterator<Item = impl std::future::Future<Output = Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    let results = futures_util::future::join_all(steps).await;
    let mut cause: Option<StoreError> = None;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                if cause.as_ref().is_none_or(|c| aborted(c) && !aborted(&e)) {
                    cause = Some(e);
                }
            }
        }
    }
    match cause {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Whether `e` only says an earlier statement failed.
fn aborted(e: &StoreError) -> bool {
    let StoreError::Backend { source } = e else {
        return false;
    };
    source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
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
    let touched: Vec<&str> = settled
        .iter()
        .map(String::as_str)
        .chain(ids.iter().copied())
        .collect();
    // The digest names the configuration too.
    let digests: Vec<String> = commands.iter().map(|c| c.entitlement.digest()).collect();
    // Each read by its own index: an `OR` of the two, or a join the
    // planner may turn into a scan once statistics say the outbox holds
    // one configuration, would read the whole outbox once per change.
    let (known, by_id, by_entitlement) = tokio::join!(
        async { query(tx, "SELECT id FROM command_ids WHERE id = ANY($1)", &[&ids]).await },
        async {
            query(
                tx,
                "SELECT doc FROM outbox WHERE command_id = ANY($1)",
                &[&touched],
            )
            .await
        },
        async {
            query(
                tx,
                "SELECT doc FROM outbox WHERE entitlement = ANY($1)",
                &[&digests],
            )
            .await
        }
    );
    for row in known? {
        q.known.insert(row.get(0));
    }
    for row in by_id?.iter().chain(by_entitlement?.iter()) {
        q.hold(decode("outbox", row.get::<_, JsonIn>(0).0)?);
    }
    queue::apply(&mut q, commands, settled)?;
    // Removals first: an appended command may take the place (its
    // entitlement's) of one removed.
    let mut removed: Vec<Step<'_>> = Vec::new();
    let mut appended = Vec::new();
    let mut announce = std::collections::BTreeSet::new();
    for write in q.writes {
        match write {
            QueueWrite::Remove(id) => removed.push(Box::pin(async move {
                execute(tx, "DELETE FROM outbox WHERE command_id = $1", &[&id]).await
            })),
            QueueWrite::Append(command, priority) => {
                announce.insert(command.entitlement.configuration.as_str().to_owned());
                let doc = encode(&*command)?;
                appended.push((command, i16::from(priority), doc));
            }
        }
    }
    together(removed).await?;
    let mut added: Vec<Step<'_>> = Vec::new();
    for (command, priority, doc) in &appended {
        added.push(Box::pin(async move {
            execute(tx, "INSERT INTO command_ids (id) VALUES ($1)", &[&command.id]).await
        }));
        let sql = "INSERT INTO outbox (configuration, priority, entitlement, command_id, doc) \
                   VALUES ($1, $2, $3, $4, $5)";
        added.push(Box::pin(async move {
            execute(
                tx,
                sql,
                &[
                    &command.entitlement.configuration.as_str(),
                    priority,
                    &command.entitlement.digest(),
                    &command.id,
                    &JsonOut(doc),
                ],
            )
            .await
        }));
    }
    together(added).await?;
    // Delivered to the listening brokers when (and if) this commits.
    for configuration in announce {
        let payload = super::notify::payload(&configuration, me);
        let sql = "SELECT pg_notify($1, $2)";
        query(tx, sql, &[&super::notify::OUTBOX, &payload]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::scratch::ScratchDatabase;
    use crate::store::postgres::PgStore;

    /// Of statements sent together, the failure reported is the one that
    /// caused the others ("current transaction is aborted"), whatever
    /// order they are listed in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statements_sent_together_report_the_failure_that_caused_the_rest() {
        let db = ScratchDatabase::create().await.unwrap();
        let store = PgStore::open(&db.settings(), true).await.unwrap();
        let mut client = store.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        execute(&tx, "INSERT INTO command_ids (id) VALUES ('taken')", &[])
            .await
            .unwrap();
        // The failing statement is prepared already, so it is executed
        // first though listed last: the others, prepared on the way, find
        // the transaction aborted.
        let steps: Vec<Step<'_>> = vec![
            Box::pin(execute(&tx, "INSERT INTO command_ids (id) VALUES ('free')", &[])),
            Box::pin(execute(
                &tx,
                "INSERT INTO command_ids (id) VALUES ('also free')",
                &[],
            )),
            Box::pin(execute(&tx, "INSERT INTO command_ids (id) VALUES ('taken')", &[])),
        ];
        let err = together(steps).await.unwrap_err();
        assert!(matches!(err, StoreError::Raced(_)), "{err}");
        assert!(err.is_conflict());
    }
}
