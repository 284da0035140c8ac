//! Which job a grant or a request calls for. Jobs are kept in the store,
//! so they survive restarts; a job is removed by unscheduling the same
//! value.

use crate::domain::grant::Grant;
use crate::domain::job::{Job, JobKind};
use crate::domain::request::Request;

/// Closes `grant`'s window at its end.
pub fn expire_grant(grant: &Grant) -> Job {
    Job {
        due: grant.ends_at,
        kind: JobKind::ExpireGrant(grant.id),
    }
}

/// Opens `grant`'s window at its start.
pub fn activate_grant(grant: &Grant) -> Job {
    Job {
        due: grant.starts_at,
        kind: JobKind::ActivateGrant(grant.id),
    }
}

/// Stops `request` accepting reviews once its pending time is over.
pub fn expire_pending(request: &Request) -> Job {
    Job {
        due: request.pending_expires_at,
        kind: JobKind::ExpirePending(request.id),
    }
}
