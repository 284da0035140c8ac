//! Scheduled work, one home for all of it:
//!
//! - [`jobs`]: the jobs kept in the store (grant activation and expiry,
//!   pending-request expiry): which job a grant or request calls for.
//! - [`handlers`]: what a due job does, and running a batch of them as one
//!   durable commit.
//! - [`due`]: the loop that runs due jobs, backing off while they fail.
//! - [`periodic`]: work done every so often whatever is stored: signing the
//!   audit chain's head, sweeping expired sign-ins. (Reconciliation with a
//!   tenant runs per agent session, every `reconcile_interval`, in the hub.)

pub mod due;
pub mod handlers;
pub mod jobs;
pub mod periodic;

pub use due::run;
pub use handlers::{DueRun, JOB_BATCH};
