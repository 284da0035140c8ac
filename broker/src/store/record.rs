//! Records written with compare-and-set on their version, one way for every
//! kind and every backend: each names its kind and id and carries the
//! version it was read at (0 when new); a commit writes the next one and
//! says so in [`Committed`].

use crate::domain::agent::{Agent, JoinToken};
use crate::domain::catalog::{StoredConfiguration, StoredResource};
use crate::domain::grant::Grant;
use crate::domain::lease::Lease;
use crate::domain::request::Request;
use crate::domain::session::{PendingLogin, Session, UsedAssertion};
use crate::domain::user::User;
use crate::identity::scim::{ScimConnection, ScimResource};

/// A record kept with compare-and-set on its version.
pub trait Versioned {
    /// What it is, in messages (`"grant"`, `"SCIM resource"`).
    fn kind(&self) -> &'static str;
    /// Its id among records of its kind.
    fn id(&self) -> String;
    /// The version it was read at (0 when new).
    fn version(&self) -> u64;
    /// The same record at `version`.
    fn set_version(&mut self, version: u64);
}

macro_rules! versioned {
    ($ty:ty, $kind:literal, |$r:ident| $id:expr) => {
        impl Versioned for $ty {
            fn kind(&self) -> &'static str {
                $kind
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

versioned!(StoredConfiguration, "configuration", |r| r.config.id);
versioned!(StoredResource, "resource", |r| r.resource.id);
versioned!(User, "user", |r| r.id);
versioned!(Request, "request", |r| r.id);
versioned!(Grant, "grant", |r| r.id);
versioned!(Lease, "lease", |r| r.key);
versioned!(JoinToken, "join token", |r| r.hash);
versioned!(Agent, "agent", |r| r.id);
versioned!(PendingLogin, "sign-in", |r| r.key);
versioned!(Session, "session", |r| r.id);
versioned!(UsedAssertion, "SAML assertion", |r| r.key);
versioned!(ScimConnection, "SCIM connection", |r| r.name);
versioned!(ScimResource, "SCIM resource", |r| format!(
    "{}/{}/{}",
    r.connection,
    r.kind.name(),
    r.id
));

/// What a commit wrote: the new version of each versioned record, so a
/// service goes on from what was stored instead of repeating the
/// backend's arithmetic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    versions: Vec<(&'static str, String, u64)>,
}

impl Committed {
    /// For backends: `kind`/`id` now stored at `version`.
    pub fn wrote(&mut self, kind: &'static str, id: String, version: u64) {
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
