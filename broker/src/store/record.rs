//! Records written with compare-and-set on their version, one way for every
//! kind and every backend: each names its kind and id and carries the
//! version it was read at (0 when new); a commit writes the next one and
//! says so in [`Committed`].
//!
//! A new kind of record is: a [`RecordKind`] and a `versioned!` line here,
//! a field of [`Change`](super::Change) and its line in
//! [`Change::records`](super::Change::records), and its place in each
//! backend (the compiler asks for it: backends match on [`RecordKind`]).

use serde::Serialize;

use crate::domain::agent::{Agent, JoinToken};
use crate::domain::catalog::{StoredConfiguration, StoredResource};
use crate::domain::contact::LastContact;
use crate::domain::grant::Grant;
use crate::domain::lease::Lease;
use crate::domain::request::Request;
use crate::domain::session::{PendingLogin, Session, UsedAssertion};
use crate::domain::user::User;
use crate::identity::scim::{ScimConnection, ScimResource};
use crate::notify::queue::{Cursor, Notification};

/// The kinds of versioned record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Configuration,
    Resource,
    User,
    Request,
    Grant,
    Lease,
    JoinToken,
    Agent,
    PendingLogin,
    Session,
    UsedAssertion,
    ScimConnection,
    ScimResource,
    Notification,
    Cursor,
    LastContact,
}

impl RecordKind {
    /// Every kind.
    pub const ALL: [RecordKind; 16] = [
        RecordKind::Configuration,
        RecordKind::Resource,
        RecordKind::User,
        RecordKind::Request,
        RecordKind::Grant,
        RecordKind::Lease,
        RecordKind::JoinToken,
        RecordKind::Agent,
        RecordKind::PendingLogin,
        RecordKind::Session,
        RecordKind::UsedAssertion,
        RecordKind::ScimConnection,
        RecordKind::ScimResource,
        RecordKind::Notification,
        RecordKind::Cursor,
        RecordKind::LastContact,
    ];

    /// What it is, in messages (`"grant"`, `"SCIM resource"`).
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Configuration => "configuration",
            RecordKind::Resource => "resource",
            RecordKind::User => "user",
            RecordKind::Request => "request",
            RecordKind::Grant => "grant",
            RecordKind::Lease => "lease",
            RecordKind::JoinToken => "join token",
            RecordKind::Agent => "agent",
            RecordKind::PendingLogin => "sign-in",
            RecordKind::Session => "session",
            RecordKind::UsedAssertion => "SAML assertion",
            RecordKind::ScimConnection => "SCIM connection",
            RecordKind::ScimResource => "SCIM resource",
            RecordKind::Notification => "notification",
            RecordKind::Cursor => "cursor",
            RecordKind::LastContact => "last contact",
        }
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A record kept with compare-and-set on its version.
pub trait Versioned {
    fn kind(&self) -> RecordKind;
    /// Its id among records of its kind.
    fn id(&self) -> String;
    /// The version it was read at (0 when new).
    fn version(&self) -> u64;
    /// The same record at `version`.
    fn set_version(&mut self, version: u64);
}

/// A versioned record as a backend writes it: its kind, id and version,
/// and its stored form.
pub trait Record: Versioned + Sync {
    /// Appends the record at `version` to `out`, as JSON (the stored form
    /// in every backend).
    fn write_json_at(&self, version: u64, out: &mut Vec<u8>) -> serde_json::Result<()>;
}

impl<T: Versioned + Serialize + Clone + Sync> Record for T {
    fn write_json_at(&self, version: u64, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let mut next = self.clone();
        next.set_version(version);
        serde_json::to_writer(out, &next)
    }
}

macro_rules! versioned {
    ($ty:ty, $kind:ident, |$r:ident| $id:expr) => {
        impl Versioned for $ty {
            fn kind(&self) -> RecordKind {
                RecordKind::$kind
            }
            fn id(&self) -> String {
                let $r = self;
                $id.to_string()
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn set_version(&mut self, version: u64) {
                self.version = version;
            }
        }
    };
}

versioned!(StoredConfiguration, Configuration, |r| r.config.id);
versioned!(StoredResource, Resource, |r| r.resource.id);
versioned!(User, User, |r| r.id);
versioned!(Request, Request, |r| r.id);
versioned!(Grant, Grant, |r| r.id);
versioned!(Lease, Lease, |r| r.key);
versioned!(JoinToken, JoinToken, |r| r.hash);
versioned!(Agent, Agent, |r| r.id);
versioned!(PendingLogin, PendingLogin, |r| r.key);
versioned!(Session, Session, |r| r.id);
versioned!(UsedAssertion, UsedAssertion, |r| r.key);
versioned!(ScimConnection, ScimConnection, |r| r.name);
versioned!(ScimResource, ScimResource, |r| format!(
    "{}/{}/{}",
    r.connection,
    r.kind.name(),
    r.id
));
versioned!(Notification, Notification, |r| r.id);
versioned!(Cursor, Cursor, |r| r.name);
versioned!(LastContact, LastContact, |r| r.configuration);

/// What a commit wrote: the new version of each versioned record, so a
/// service goes on from what was stored instead of repeating the
/// backend's arithmetic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    versions: Vec<(RecordKind, String, u64)>,
}

impl Committed {
    /// For backends: `kind`/`id` now stored at `version`.
    pub fn wrote(&mut self, kind: RecordKind, id: String, version: u64) {
        self.versions.push((kind, id, version));
    }

    /// The version `record` was stored at, if this commit wrote it.
    pub fn version_of(&self, record: &dyn Versioned) -> Option<u64> {
        let (kind, id) = (record.kind(), record.id());
        self.versions
            .iter()
            .find(|(k, i, _)| *k == kind && *i == id)
            .map(|(_, _, v)| *v)
    }

    /// `record` as this commit stored it (at its new version).
    pub fn stored<T: Versioned>(&self, mut record: T) -> T {
        if let Some(v) = self.version_of(&record) {
            record.set_version(v);
        }
        record
    }
}
