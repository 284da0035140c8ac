//! The store on PostgreSQL, for several brokers sharing one database.
//!
//! Each kind of record has its table (see `migrations/`); a change is one
//! transaction ([`write`]); reads are single statements over the columns
//! the typed queries filter on, with the [query](super::query)'s
//! `matches` applied last, so every backend returns the same.

mod connect;
mod dump;
mod json;
mod notify;
pub mod schema;
pub mod scratch;
mod write;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use jitgate_shared::v1::{AgentId, ConfigId, GrantId, RequestId, ResourceId, UserId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

pub use connect::{describe, PgSettings};
use json::JsonIn;

use super::{
    Change, Committed, GrantFilter, PageQuery, RecordKind, RequestFilter, ScimFilter, SessionFilter, Store,
    StoreError, TokenFilter,
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

/// The table of each kind of versioned record.
fn table(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Configuration => "configurations",
        RecordKind::Resource => "resources",
        RecordKind::User => "users",
        RecordKind::Request => "requests",
        RecordKind::Grant => "grants",
        RecordKind::Lease => "leases",
        RecordKind::JoinToken => "join_tokens",
        RecordKind::Agent => "agents",
        RecordKind::PendingLogin => "pending_logins",
        RecordKind::Session => "sessions",
        RecordKind::UsedAssertion => "used_assertions",
        RecordKind::ScimConnection => "scim_connections",
        RecordKind::ScimResource => "scim_resources",
        RecordKind::Notification => "notifications",
        RecordKind::Cursor => "cursors",
        RecordKind::LastContact => "last_contacts",
    }
}

/// A failure of the database or the pool, as a store error: a write that
/// lost a race the versions do not name (a unique key taken, a deadlock
/// broken, a serialization failure) is [`StoreError::Raced`], retried
/// like a version conflict.
trait PgFailure {
    fn into_store_error(self) -> StoreError;
}

impl PgFailure for tokio_postgres::Error {
    fn into_store_error(self) -> StoreError {
        let raced = [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ];
        match self.as_db_error() {
            Some(db) if raced.contains(db.code()) => StoreError::Raced(db.message().to_owned()),
            _ => StoreError::backend(self),
        }
    }
}

impl PgFailure for deadpool_postgres::PoolError {
    fn into_store_error(self) -> StoreError {
        match self {
            deadpool_postgres::PoolError::Backend(e) => e.into_store_error(),
            deadpool_postgres::PoolError::Timeout(_) => {
                StoreError::Busy("no database connection came free in time".into())
            }
            other => StoreError::backend(other),
        }
    }
}

fn pg_error(e: impl PgFailure) -> StoreError {
    e.into_store_error()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::backend)
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: format!("a row of {what}"),
        source: std::sync::Arc::new(e),
    })
}

/// Versions and sequence numbers are `bigint`; ours never reach 2^63.
fn i64_of(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(StoreError::backend)
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// How serde names a value (a state's wire name), as the JSON columns
/// hold it.
fn wire_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// Whether `url` is a database URL the driver reads; what is wrong if not.
pub fn check_url(url: &str) -> Result<(), String> {
    connect::parse(url).map(drop).map_err(|e| e.to_string())
}

/// How long a broker's claim on the due jobs it runs keeps other brokers
/// off them: the longest a dead broker's jobs wait for another.
pub const JOB_CLAIM: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug)]
pub struct PgStore {
    pool: Pool,
    /// To listen for other brokers' outbox changes on a connection of its
    /// own.
    settings: PgSettings,
    /// This store's name in claims and notifications (one per process).
    me: String,
}

impl PgStore {
    /// Connects to the database and checks its schema: a newer one than
    /// this broker knows is refused; an older one is migrated when
    /// `migrate` is set, refused otherwise.
    pub async fn open(settings: &PgSettings, migrate: bool) -> Result<Self, StoreError> {
        let pool = connect::pool(settings)?;
        let unreachable = |e: StoreError| StoreError::Open {
            path: describe(&settings.url),
            reason: format!("cannot reach the database: {e}"),
            source: std::sync::Arc::new(e),
        };
        drop(pool.get().await.map_err(|e| unreachable(pg_error(e)))?);
        match schema::check(&pool).await? {
            schema::Schema::Current => {}
            schema::Schema::Ahead { at, latest } => return Err(schema::ahead(at, latest)),
            schema::Schema::Behind { at, latest } if !migrate => return Err(schema::behind(at, latest)),
            schema::Schema::Behind { at, latest } => {
                let applied = schema::migrate(&pool).await?;
                tracing::info!(from = at, to = latest, ?applied, "database schema migrated");
            }
        }
        Ok(Self {
            pool,
            settings: settings.clone(),
            me: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// This store's name in job claims and outbox notifications, unique to
    /// the process.
    pub fn instance(&self) -> &str {
        &self.me
    }

    /// The pool, for tools that work on the database itself (migrations).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        client.query(&statement, params).await.map_err(pg_error)
    }

    /// Every row's first column, a JSON document, decoded.
    async fn docs<T: DeserializeOwned>(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<T>, StoreError> {
        self.rows(sql, params)
            .await?
            .iter()
            .map(|row| decode(what, row.get::<_, JsonIn>(0).0))
            .collect()
    }

    async fn doc<T: DeserializeOwned>(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<T>, StoreError> {
        Ok(self.docs(what, sql, params).await?.into_iter().next())
    }

    async fn by_id<T: DeserializeOwned>(&self, kind: RecordKind, id: &str) -> Result<Option<T>, StoreError> {
        let table = table(kind);
        self.doc(table, &format!("SELECT doc FROM {table} WHERE id = $1"), &[&id])
            .await
    }

    async fn every<T: DeserializeOwned>(&self, kind: RecordKind) -> Result<Vec<T>, StoreError> {
        let table = table(kind);
        self.docs(table, &format!("SELECT doc FROM {table} ORDER BY id"), &[])
            .await
    }

    /// Newest first from `page.after`, `keep` deciding last: pages of the
    /// pre-filtered rows are read until `page.limit` are kept or none are
    /// left. `sql` selects `id, doc` with `$1` the id to read below and
    /// `$2` the number of rows, plus its own parameters.
    async fn page<T: DeserializeOwned>(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        page: &PageQuery,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut after = page.after.clone();
        let chunk = i64::try_from(page.limit).unwrap_or(i64::MAX);
        loop {
            let mut all: Vec<&(dyn ToSql + Sync)> = vec![&after, &chunk];
            all.extend_from_slice(params);
            let rows = self.rows(sql, &all).await?;
            let read = rows.len();
            for row in &rows {
                after = Some(row.get(0));
                let item: T = decode(what, row.get::<_, JsonIn>(1).0)?;
                if keep(&item) {
                    out.push(item);
                    if out.len() >= page.limit {
                        return Ok(out);
                    }
                }
            }
            if read < page.limit {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn commit(&self, change: Change) -> Result<Committed, StoreError> {
        let mut results = write::commit_all(&self.pool, &self.me, vec![change]).await;
        results.pop().unwrap_or_else(|| Ok(Committed::default()))
    }

    async fn commit_all(&self, changes: Vec<Change>) -> Vec<Result<Committed, StoreError>> {
        write::commit_all(&self.pool, &self.me, changes).await
    }

    async fn dump(&self, sink: &mut dyn super::dump::DumpSink) -> Result<(), StoreError> {
        self.dump_into(sink).await
    }

    async fn load(&self, entries: Vec<super::dump::Entry>) -> Result<(), StoreError> {
        self.load_entries(entries).await
    }

    async fn entry_count(&self) -> Result<u64, StoreError> {
        self.count_entries().await
    }

    fn announcements(&self) -> Option<super::Announcements> {
        Some(notify::spawn_listener(self.settings.clone(), self.me.clone()))
    }

    async fn configuration(&self, id: &ConfigId) -> Result<Option<StoredConfiguration>, StoreError> {
        self.by_id(RecordKind::Configuration, id.as_str()).await
    }

    async fn configurations(&self) -> Result<Vec<StoredConfiguration>, StoreError> {
        self.every(RecordKind::Configuration).await
    }

    async fn resource(&self, id: &ResourceId) -> Result<Option<StoredResource>, StoreError> {
        self.by_id(RecordKind::Resource, id.as_str()).await
    }

    async fn resources(&self) -> Result<Vec<StoredResource>, StoreError> {
        self.every(RecordKind::Resource).await
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.by_id(RecordKind::User, id.as_str()).await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.every(RecordKind::User).await
    }

    async fn token(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        self.doc("tokens", "SELECT doc FROM tokens WHERE hash = $1", &[&hash])
            .await
    }

    async fn tokens(&self, filter: &TokenFilter) -> Result<Vec<ApiToken>, StoreError> {
        let sql = "SELECT doc FROM tokens \
                   WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR session = $2) \
                   ORDER BY hash";
        let user = filter.user.as_ref().map(UserId::as_str);
        let tokens: Vec<ApiToken> = self.docs("tokens", sql, &[&user, &filter.session]).await?;
        Ok(tokens.into_iter().filter(|t| filter.matches(t)).collect())
    }

    async fn pending_login(&self, key: &str) -> Result<Option<PendingLogin>, StoreError> {
        self.by_id(RecordKind::PendingLogin, key).await
    }

    async fn expired_logins(&self, before: DateTime<Utc>) -> Result<Vec<PendingLogin>, StoreError> {
        let sql = "SELECT doc FROM pending_logins WHERE expires_at <= $1 ORDER BY id";
        let logins: Vec<PendingLogin> = self.docs("pending_logins", sql, &[&before]).await?;
        Ok(logins.into_iter().filter(|p| p.expires_at < before).collect())
    }

    async fn expired_assertions(&self, before: DateTime<Utc>) -> Result<Vec<UsedAssertion>, StoreError> {
        // Swept every few minutes; no index.
        let sql = "SELECT doc FROM used_assertions WHERE jitgate_instant(doc->>'expires_at') < $1";
        let found: Vec<UsedAssertion> = self.docs("used_assertions", sql, &[&before]).await?;
        Ok(found.into_iter().filter(|a| a.expires_at < before).collect())
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.by_id(RecordKind::Session, id).await
    }

    async fn sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        let sql = "SELECT doc FROM sessions WHERE ($1::text IS NULL OR user_id = $1) ORDER BY id";
        let user = filter.user.as_ref().map(UserId::as_str);
        let sessions: Vec<Session> = self.docs("sessions", sql, &[&user]).await?;
        Ok(sessions.into_iter().filter(|s| filter.matches(s)).collect())
    }

    async fn scim_connection(&self, name: &str) -> Result<Option<ScimConnection>, StoreError> {
        self.by_id(RecordKind::ScimConnection, name).await
    }

    async fn scim_connections(&self) -> Result<Vec<ScimConnection>, StoreError> {
        self.every(RecordKind::ScimConnection).await
    }

    async fn scim_resource(
        &self,
        connection: &str,
        kind: ScimKind,
        id: &str,
    ) -> Result<Option<ScimResource>, StoreError> {
        let id = format!("{}{id}", super::keys::scim_scope(connection, kind));
        self.by_id(RecordKind::ScimResource, &id).await
    }

    async fn scim_named(
        &self,
        connection: &str,
        kind: ScimKind,
        name: &str,
    ) -> Result<Vec<ScimResource>, StoreError> {
        let scope = super::keys::scim_scope(connection, kind);
        let sql = "SELECT doc FROM scim_resources WHERE name = $1 AND starts_with(id, $2) ORDER BY id";
        self.docs("scim_resources", sql, &[&name.to_lowercase(), &scope])
            .await
    }

    async fn scim_resources(
        &self,
        connection: &str,
        kind: ScimKind,
        filter: &ScimFilter,
    ) -> Result<Vec<ScimResource>, StoreError> {
        let scope = super::keys::scim_scope(connection, kind);
        let end = String::from_utf8_lossy(&super::keys::prefix_end(scope.as_bytes())).into_owned();
        let sql = "SELECT doc FROM scim_resources WHERE id >= $1 AND id < $2 ORDER BY id";
        let all: Vec<ScimResource> = self.docs("scim_resources", sql, &[&scope, &end]).await?;
        Ok(all.into_iter().filter(|r| filter.matches(r)).collect())
    }

    async fn request(&self, id: RequestId) -> Result<Option<Request>, StoreError> {
        self.by_id(RecordKind::Request, &id.to_string()).await
    }

    async fn requests(&self, page: &PageQuery, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let sql = "SELECT id, doc FROM requests \
                   WHERE ($1::text IS NULL OR id < $1) \
                     AND ($3::text IS NULL OR requester = $3) \
                     AND (cardinality($4::text[]) = 0 OR state = ANY($4)) \
                   ORDER BY id DESC LIMIT $2";
        let requester = filter.requester.as_ref().map(UserId::as_str);
        let states: Vec<String> = filter.states.iter().map(wire_name).collect();
        self.page("requests", sql, &[&requester, &states], page, |r| {
            filter.matches(r)
        })
        .await
    }

    async fn grant(&self, id: GrantId) -> Result<Option<Grant>, StoreError> {
        self.by_id(RecordKind::Grant, &id.to_string()).await
    }

    async fn grants(&self, page: &PageQuery, filter: &GrantFilter) -> Result<Vec<Grant>, StoreError> {
        let sql = "SELECT id, doc FROM grants \
                   WHERE ($1::text IS NULL OR id < $1) \
                     AND ($3::text IS NULL OR user_id = $3) \
                     AND (cardinality($4::text[]) = 0 OR state = ANY($4)) \
                     AND (NOT $5 OR revoke_failing) \
                     AND ($6::timestamptz IS NULL OR ended_at IS NULL OR ended_at >= $6) \
                     AND ($7::text IS NULL OR chain_head = $7) \
                   ORDER BY id DESC LIMIT $2";
        let user = filter.user.as_ref().map(UserId::as_str);
        let states: Vec<String> = filter.states.iter().map(wire_name).collect();
        let chain_head = filter.awaiting_check_in.as_ref().map(ConfigId::as_str);
        let params: [&(dyn ToSql + Sync); 5] = [
            &user,
            &states,
            &filter.revoke_failing,
            &filter.ended_since,
            &chain_head,
        ];
        self.page("grants", sql, &params, page, |g| filter.matches(g))
            .await
    }

    async fn lease(&self, key: &str) -> Result<Option<Lease>, StoreError> {
        self.by_id(RecordKind::Lease, key).await
    }

    async fn held_leases(&self, configuration: &ConfigId) -> Result<Vec<Lease>, StoreError> {
        let sql = "SELECT doc FROM leases WHERE configuration = $1 AND held ORDER BY id";
        self.docs("leases", sql, &[&configuration.as_str()]).await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = "SELECT doc FROM jobs ORDER BY due, kind, subject LIMIT 1";
        let job: Option<Job> = self.doc("jobs", sql, &[]).await?;
        Ok(job.map(|j| j.due))
    }

    async fn due_jobs(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, StoreError> {
        // The column keeps microseconds; the job's own instant decides.
        let sql = "SELECT doc FROM jobs WHERE due <= $1 ORDER BY due, kind, subject LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let jobs: Vec<Job> = self.docs("jobs", sql, &[&now, &limit]).await?;
        Ok(jobs.into_iter().filter(|j| j.due <= now).collect())
    }

    async fn cursor(&self, name: &str) -> Result<Option<Cursor>, StoreError> {
        self.by_id(RecordKind::Cursor, name).await
    }

    async fn last_contacts(&self) -> Result<Vec<LastContact>, StoreError> {
        self.every(RecordKind::LastContact).await
    }

    async fn notification(&self, id: &str) -> Result<Option<Notification>, StoreError> {
        self.by_id(RecordKind::Notification, id).await
    }

    async fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        // The column keeps microseconds; the notification's own instant
        // decides.
        let sql = "SELECT doc FROM notifications WHERE due <= $1 ORDER BY due, id LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let due: Vec<Notification> = self.docs("notifications", sql, &[&now, &limit]).await?;
        Ok(due
            .into_iter()
            .filter(|n| n.due.is_some_and(|d| d <= now))
            .collect())
    }

    async fn notifications_about(&self, request: RequestId) -> Result<Vec<Notification>, StoreError> {
        let sql = "SELECT doc FROM notifications WHERE request = $1 ORDER BY id";
        self.docs("notifications", sql, &[&request.to_string()]).await
    }

    async fn notifications(&self) -> Result<Vec<Notification>, StoreError> {
        self.every(RecordKind::Notification).await
    }

    async fn claim_due_jobs(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, StoreError> {
        // The database's clock times claims, so brokers' clocks need not
        // agree. A claim of this store's own is taken again (a job whose
        // change failed is retried at once here).
        let sql = "WITH due AS ( \
                       SELECT due, kind, subject FROM jobs \
                       WHERE due <= $1 AND (claimed_until IS NULL OR claimed_until < now() OR claimed_by = $3) \
                       ORDER BY due, kind, subject LIMIT $2 \
                       FOR UPDATE SKIP LOCKED) \
                   UPDATE jobs SET claimed_by = $3, claimed_until = now() + make_interval(secs => $4) \
                   FROM due \
                   WHERE jobs.due = due.due AND jobs.kind = due.kind AND jobs.subject = due.subject \
                   RETURNING jobs.doc";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut jobs: Vec<Job> = self
            .docs("jobs", sql, &[&now, &limit, &self.me, &JOB_CLAIM.as_secs_f64()])
            .await?;
        jobs.retain(|j| j.due <= now);
        jobs.sort();
        Ok(jobs)
    }

    async fn job_count(&self) -> Result<usize, StoreError> {
        let rows = self.rows("SELECT count(*) FROM jobs", &[]).await?;
        let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn outbox(&self, configuration: &ConfigId, limit: usize) -> Result<Vec<Command>, StoreError> {
        let sql = "SELECT doc FROM outbox WHERE configuration = $1 ORDER BY priority, seq LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.docs("outbox", sql, &[&configuration.as_str(), &limit]).await
    }

    async fn queued_command(&self, id: &str) -> Result<Option<Command>, StoreError> {
        self.doc("outbox", "SELECT doc FROM outbox WHERE command_id = $1", &[&id])
            .await
    }

    async fn command_result(&self, id: &str) -> Result<Option<CommandResult>, StoreError> {
        let sql = "SELECT doc FROM command_results WHERE command_id = $1";
        self.doc("command_results", sql, &[&id]).await
    }

    async fn join_token(&self, hash: &str) -> Result<Option<JoinToken>, StoreError> {
        self.by_id(RecordKind::JoinToken, hash).await
    }

    async fn agent(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        self.by_id(RecordKind::Agent, &id.to_string()).await
    }

    async fn agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.every(RecordKind::Agent).await
    }

    async fn audit(&self, from: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = "SELECT doc FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.docs("audit", sql, &[&i64_of(from)?, &limit]).await
    }

    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        let rows = self.rows("SELECT seq, hash FROM audit_head", &[]).await?;
        Ok(rows
            .first()
            .map(|r| AuditHead {
                seq: u64_of(r.get(0)),
                hash: r.get(1),
            })
            .unwrap_or_default())
    }

    async fn audit_anchor(&self) -> Result<Option<AuditAnchor>, StoreError> {
        self.doc("audit_anchor", "SELECT doc FROM audit_anchor", &[])
            .await
    }
}

#[cfg(test)]
mod tests;
