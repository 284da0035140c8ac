//! Durable state behind one trait with domain-level methods.
//!
//! Every mutation is a [`Change`]: typed records written with compare-and-set
//! on their `version`, commands appended to a configuration's outbox, jobs
//! scheduled or removed, and audit entries chained. A change is applied
//! atomically and is durable (flushed) before `commit` returns, so nobody
//! outside (an agent, a cloud, an HTTP caller) hears of a state that a crash
//! could take back.
//!
//! [`sled`] is the embedded default; [`postgres`] keeps the same state in
//! a database several brokers share.

pub mod backup;
pub mod changed;
#[cfg(test)]
pub(crate) mod conformance;
pub mod dump;
pub mod keys;
pub mod postgres;
pub mod query;
pub mod record;
pub mod sled;

pub use query::{GrantFilter, RequestFilter, ScimFilter, SessionFilter, TokenFilter};
pub use record::{Committed, Record, RecordKind, Versioned};

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jitgate_shared::v1::{AgentId, ConfigId, GrantId, RequestId, ResourceId, UserId};

use crate::audit::anchor::AuditAnchor;
use crate::audit::{AuditEntry, AuditHead, AuditRecord};
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

/// One atomic, durable unit of change.
#[derive(Debug, Default, Clone)]
pub struct Change {
    pub configurations: Vec<StoredConfiguration>,
    pub resources: Vec<StoredResource>,
    pub users: Vec<User>,
    pub tokens: Vec<ApiToken>,
    /// Hashes of tokens to delete.
    pub delete_tokens: Vec<String>,
    pub requests: Vec<Request>,
    pub grants: Vec<Grant>,
    pub leases: Vec<Lease>,
    /// Appended to their configuration's outbox; a command id already queued
    /// (or delivered) is not queued again. A command supersedes any queued
    /// for the same entitlement: each says what the tenant should hold.
    pub commands: Vec<Command>,
    /// Ids of commands to take off the outbox, settled by an agent.
    pub delivered: Vec<String>,
    pub results: Vec<CommandResult>,
    pub schedule: Vec<Job>,
    pub unschedule: Vec<Job>,
    pub audit: Vec<AuditEntry>,
    pub join_tokens: Vec<JoinToken>,
    pub agents: Vec<Agent>,
    pub scim_connections: Vec<ScimConnection>,
    /// Names of SCIM connections to delete.
    pub delete_scim_connections: Vec<String>,
    /// Written with their name index kept in step.
    pub scim_resources: Vec<ScimResource>,
    pub delete_scim_resources: Vec<ScimResource>,
    pub pending_logins: Vec<PendingLogin>,
    /// Keys of pending logins to delete (expired ones, swept).
    pub delete_pending_logins: Vec<String>,
    pub sessions: Vec<Session>,
    /// Written once (version 0): a second write of the same id conflicts.
    pub used_assertions: Vec<UsedAssertion>,
    /// Keys of used assertions past their expiry to delete (swept).
    pub delete_used_assertions: Vec<String>,
    /// A newer signed anchor of the audit chain (an older one than stored
    /// is ignored).
    pub audit_anchor: Option<AuditAnchor>,
    /// Notifications queued, claimed or settled.
    pub notifications: Vec<Notification>,
    /// Ids of settled notifications to delete (old ones, swept).
    pub delete_notifications: Vec<String>,
    pub cursors: Vec<Cursor>,
    pub last_contacts: Vec<LastContact>,
}

impl Change {
    /// The lease this change already writes under `key`: a service that
    /// touches one lease several times in a change (two grants of one
    /// entitlement ending together) reads its own write.
    pub fn lease(&self, key: &str) -> Option<&Lease> {
        self.leases.iter().find(|l| l.key == key)
    }

    /// Writes `lease`, replacing an earlier write of it in this change (it
    /// keeps the version it was read at, so compare-and-set still holds).
    pub fn put_lease(&mut self, lease: Lease) {
        match self.leases.iter_mut().find(|l| l.key == lease.key) {
            Some(staged) => *staged = lease,
            None => self.leases.push(lease),
        }
    }

    /// Queues `command`; one queued earlier in this change for the same
    /// entitlement is superseded, as a queued one is in the outbox.
    pub fn put_command(&mut self, command: Command) {
        let key = Lease::key_for(&command.entitlement);
        self.commands.retain(|c| Lease::key_for(&c.entitlement) != key);
        self.commands.push(command);
    }

    /// Every versioned record this change writes, of every kind: the one
    /// list backends walk to check and bump versions.
    pub fn records(&self) -> impl Iterator<Item = &dyn Record> {
        fn each<T: Record>(v: &[T]) -> impl Iterator<Item = &dyn Record> {
            v.iter().map(|r| r as &dyn Record)
        }
        each(&self.configurations)
            .chain(each(&self.resources))
            .chain(each(&self.users))
            .chain(each(&self.requests))
            .chain(each(&self.grants))
            .chain(each(&self.leases))
            .chain(each(&self.join_tokens))
            .chain(each(&self.agents))
            .chain(each(&self.scim_connections))
            .chain(each(&self.scim_resources))
            .chain(each(&self.pending_logins))
            .chain(each(&self.sessions))
            .chain(each(&self.used_assertions))
            .chain(each(&self.notifications))
            .chain(each(&self.cursors))
            .chain(each(&self.last_contacts))
    }

    pub fn is_empty(&self) -> bool {
        let Change {
            // Versioned records: in `records()`.
            configurations: _,
            resources: _,
            users: _,
            requests: _,
            grants: _,
            leases: _,
            join_tokens: _,
            agents: _,
            scim_connections: _,
            scim_resources: _,
            pending_logins: _,
            sessions: _,
            used_assertions: _,
            notifications: _,
            cursors: _,
            last_contacts: _,
            tokens,
            delete_tokens,
            commands,
            delivered,
            results,
            schedule,
            unschedule,
            audit,
            delete_scim_connections,
            delete_scim_resources,
            delete_pending_logins,
            audit_anchor,
            delete_notifications,
            delete_used_assertions,
        } = self;
        self.records().next().is_none()
            && tokens.is_empty()
            && delete_tokens.is_empty()
            && commands.is_empty()
            && delivered.is_empty()
            && results.is_empty()
            && schedule.is_empty()
            && unschedule.is_empty()
            && audit.is_empty()
            && delete_scim_connections.is_empty()
            && delete_scim_resources.is_empty()
            && delete_pending_logins.is_empty()
            && audit_anchor.is_none()
            && delete_notifications.is_empty()
            && delete_used_assertions.is_empty()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Someone else changed the record first; re-read and decide again.
    #[error("{record} `{id}` changed meanwhile (expected version {expected}, found {found})")]
    Conflict {
        record: &'static str,
        id: String,
        expected: u64,
        found: u64,
    },
    #[error("store at {path}: {reason}")]
    Open {
        path: String,
        reason: String,
        #[source]
        source: BackendError,
    },
    #[error("store backend: {source}")]
    Backend {
        #[source]
        source: BackendError,
    },
    #[error("stored {key} is unreadable: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: BackendError,
    },
    /// A change wrote one record twice: the second write would silently
    /// replace the first. A service bug, never retried.
    #[error("one change writes {record} `{id}` twice")]
    WrittenTwice { record: &'static str, id: String },
    /// A concurrent change (of another broker, on a shared database) wrote
    /// what this one writes first, in a way the versions do not name (the
    /// same entitlement queued, a deadlock broken); re-read and decide
    /// again, as after [`StoreError::Conflict`].
    #[error("a concurrent change got there first: {0}")]
    Raced(String),
    /// The database's schema is not the one this broker knows.
    #[error("{0}")]
    Schema(String),
    /// No connection to the database came free in time: the store is
    /// overloaded, not broken; try again shortly.
    #[error("the store is busy: {0}")]
    Busy(String),
}

/// The error a backend's own library gave, kept (not flattened to text) so
/// callers can look at it; shared when one failed write fails every change
/// of its batch.
pub type BackendError = std::sync::Arc<dyn std::error::Error + Send + Sync>;

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. } | StoreError::Raced(_))
    }

    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Busy(_))
    }

    /// A failure of the backend itself (I/O, its own bookkeeping).
    pub fn backend(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend {
            source: std::sync::Arc::new(source),
        }
    }
}

/// Which page of a list to read: ids after `after`, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub after: Option<String>,
    pub limit: usize,
}

/// The largest page a list returns.
pub const MAX_PAGE: usize = 500;

impl PageQuery {
    /// Items after the id `after`, at most `limit` (kept within 1 and
    /// [`MAX_PAGE`]).
    pub fn new(after: Option<impl ToString>, limit: usize) -> Self {
        Self {
            after: after.map(|a| a.to_string()),
            limit: limit.clamp(1, MAX_PAGE),
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// Applies `change` atomically and durably, or not at all. Returns the
    /// new version of each record written.
    async fn commit(&self, change: Change) -> Result<Committed, StoreError>;

    /// Applies each change atomically (each may fail on its own), with one
    /// flush for all: the fast path for many expiries at once.
    async fn commit_all(&self, changes: Vec<Change>) -> Vec<Result<Committed, StoreError>>;

    async fn configuration(&self, id: &ConfigId) -> Result<Option<StoredConfiguration>, StoreError>;
    async fn configurations(&self) -> Result<Vec<StoredConfiguration>, StoreError>;
    async fn resource(&self, id: &ResourceId) -> Result<Option<StoredResource>, StoreError>;
    async fn resources(&self) -> Result<Vec<StoredResource>, StoreError>;
    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError>;
    async fn users(&self) -> Result<Vec<User>, StoreError>;
    async fn token(&self, hash: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Every token `filter` matches (a user's, to end them all at once; the
    /// expired ones, to sweep them).
    async fn tokens(&self, filter: &TokenFilter) -> Result<Vec<ApiToken>, StoreError>;
    async fn pending_login(&self, key: &str) -> Result<Option<PendingLogin>, StoreError>;
    /// Pending logins that expired before `before`.
    async fn expired_logins(&self, before: DateTime<Utc>) -> Result<Vec<PendingLogin>, StoreError>;
    /// One-time proofs (SAML assertions, Slack signatures) that expired
    /// before `before`.
    async fn expired_assertions(&self, before: DateTime<Utc>) -> Result<Vec<UsedAssertion>, StoreError>;
    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError>;
    /// Every session `filter` matches.
    async fn sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError>;
    async fn scim_connection(&self, name: &str) -> Result<Option<ScimConnection>, StoreError>;
    async fn scim_connections(&self) -> Result<Vec<ScimConnection>, StoreError>;
    async fn scim_resource(
        &self,
        connection: &str,
        kind: ScimKind,
        id: &str,
    ) -> Result<Option<ScimResource>, StoreError>;
    /// Resources whose name (`userName`, or a group's `displayName`) is
    /// `name` without regard to case, from the name index.
    async fn scim_named(
        &self,
        connection: &str,
        kind: ScimKind,
        name: &str,
    ) -> Result<Vec<ScimResource>, StoreError>;
    /// Every resource of a kind a connection provisioned that `filter`
    /// matches, in id order.
    async fn scim_resources(
        &self,
        connection: &str,
        kind: ScimKind,
        filter: &ScimFilter,
    ) -> Result<Vec<ScimResource>, StoreError>;
    async fn request(&self, id: RequestId) -> Result<Option<Request>, StoreError>;
    /// Requests `filter` matches, newest first.
    async fn requests(&self, page: &PageQuery, filter: &RequestFilter) -> Result<Vec<Request>, StoreError>;
    async fn grant(&self, id: GrantId) -> Result<Option<Grant>, StoreError>;
    /// Grants `filter` matches, newest first.
    async fn grants(&self, page: &PageQuery, filter: &GrantFilter) -> Result<Vec<Grant>, StoreError>;
    async fn lease(&self, key: &str) -> Result<Option<Lease>, StoreError>;
    /// Leases with holders on a configuration's entitlements.
    async fn held_leases(&self, configuration: &ConfigId) -> Result<Vec<Lease>, StoreError>;

    /// When the earliest scheduled job falls due.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Jobs due at or before `now`, earliest first.
    async fn due_jobs(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, StoreError>;
    /// Due jobs for this broker to run now: on a store several brokers
    /// share, those no other broker has claimed, claimed for this one for
    /// a few seconds (so each runs once, and a dead broker's claims run
    /// out); on a store of one broker, every due job.
    async fn claim_due_jobs(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.due_jobs(now, limit).await
    }
    async fn job_count(&self) -> Result<usize, StoreError>;

    /// A configuration's queued commands, revokes first, then in queue order.
    async fn outbox(&self, configuration: &ConfigId, limit: usize) -> Result<Vec<Command>, StoreError>;
    /// A command still on the outbox, by id.
    async fn queued_command(&self, id: &str) -> Result<Option<Command>, StoreError>;
    async fn command_result(&self, id: &str) -> Result<Option<CommandResult>, StoreError>;

    async fn join_token(&self, hash: &str) -> Result<Option<JoinToken>, StoreError>;
    async fn agent(&self, id: AgentId) -> Result<Option<Agent>, StoreError>;
    async fn agents(&self) -> Result<Vec<Agent>, StoreError>;

    /// Audit records with `seq >= from`, in order.
    async fn audit(&self, from: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError>;
    /// The audit chain's last record, as a head.
    async fn audit_head(&self) -> Result<AuditHead, StoreError>;
    /// The newest signed anchor of the audit chain.
    async fn audit_anchor(&self) -> Result<Option<AuditAnchor>, StoreError>;

    /// The cursor `name`, if ever written.
    async fn cursor(&self, name: &str) -> Result<Option<Cursor>, StoreError>;

    /// When each configuration last had an agent connected.
    async fn last_contacts(&self) -> Result<Vec<LastContact>, StoreError>;
    async fn notification(&self, id: &str) -> Result<Option<Notification>, StoreError>;
    /// Notifications due at or before `now`, earliest first.
    async fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError>;
    /// Every notification kept about a request, in id order (its messages
    /// to change when it is decided).
    async fn notifications_about(&self, request: RequestId) -> Result<Vec<Notification>, StoreError>;
    /// Every notification kept (due or settled), in id order: for the
    /// delivery status and the sweep of settled ones.
    async fn notifications(&self) -> Result<Vec<Notification>, StoreError>;

    /// Hands every entry this store holds to `sink`, a page at a time, to
    /// move the store to another backend (see [`dump`]).
    async fn dump(&self, sink: &mut dyn dump::DumpSink) -> Result<(), StoreError>;
    /// Writes entries another store dumped. For an empty store only.
    async fn load(&self, entries: Vec<dump::Entry>) -> Result<(), StoreError>;
    /// How many entries a dump would give (the embedded store counts its
    /// index keys too, so it may say more; 0 is exact).
    async fn entry_count(&self) -> Result<u64, StoreError>;

    /// The embedded store, for what only it can do (an online backup).
    fn embedded(&self) -> Option<&sled::SledStore> {
        None
    }

    /// What other brokers sharing this store announce as their changes
    /// commit. `None` when no other broker can write (the embedded store).
    /// Call once.
    fn announcements(&self) -> Option<Announcements> {
        None
    }
}

/// What other brokers sharing the store announce.
#[derive(Debug)]
pub struct Announcements {
    /// Outboxes they queued commands to, so the broker holding a
    /// configuration's agent session sends them.
    pub outboxes: tokio::sync::mpsc::Receiver<OutboxWake>,
    /// What their commits touched, so pages open here refresh.
    pub changes: tokio::sync::mpsc::Receiver<changed::Changed>,
}

/// An outbox another broker changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxWake {
    /// Commands were queued for this configuration.
    Configuration(ConfigId),
    /// Any outbox may have changed (announcements were missed).
    All,
}
