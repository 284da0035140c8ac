//! Pure logic: no I/O and no clock reads. Time is passed in.
//!
//! - [`policy`]: Cedar authorization and workflow settings.
//! - [`request`]: the request state machine and reviews (N of M approvals).
//! - [`grant`]: grants, their windows, early end and extension.
//! - [`lease`]: counting holders of an entitlement; revoke on the last.
//! - [`catalog`]: PAM configurations and resources, and their checks.
//! - [`chain`]: federated-directory chains: where an elevation is applied
//!   and where it can be confirmed.
//! - [`user`]: people, their roles and who counts as the same person.
//! - [`job`]: scheduled work (activation, expiry) kept in the store.
//! - [`agent`]: gateway agents and their one-time join tokens.
//! - [`contact`]: when each configuration last had an agent connected,
//!   and which are offline.
//! - [`drift`]: what differs between the broker's leases and a tenant.

pub mod agent;
pub mod catalog;
pub mod chain;
pub mod contact;
pub mod drift;
pub mod grant;
pub mod job;
pub mod lease;
pub mod policy;
pub mod request;
pub mod session;
pub mod user;
