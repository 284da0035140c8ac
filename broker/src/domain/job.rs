//! Scheduled work kept in the store, so it survives restarts.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::{GrantId, RequestId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum JobKind {
    /// Open a scheduled grant's window.
    ActivateGrant(GrantId),
    /// Close a grant's window and release its lease.
    ExpireGrant(GrantId),
    /// Stop a pending request from accepting reviews.
    ExpirePending(RequestId),
}

impl JobKind {
    /// The kind of work, as stores key it (`"expire"`).
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::ActivateGrant(_) => "activate",
            JobKind::ExpireGrant(_) => "expire",
            JobKind::ExpirePending(_) => "pending",
        }
    }

    /// The grant or request it is about.
    pub fn subject(&self) -> String {
        match self {
            JobKind::ActivateGrant(g) | JobKind::ExpireGrant(g) => g.to_string(),
            JobKind::ExpirePending(r) => r.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Job {
    pub due: DateTime<Utc>,
    pub kind: JobKind,
}
