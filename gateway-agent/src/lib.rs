//! jitgate gateway agent: runs inside one cloud tenant, keeps an outbound
//! mutually authenticated websocket to the broker, and applies signed grant
//! and revoke commands through a provider.
//!
//! - [`state`]: the state directory (identity, credentials, CA).
//! - [`enroll`]: one-time enrollment with a join token.
//! - [`journal`]: what was applied until when; answers; reports (durable).
//! - [`executor`]: verify, journal, act; enforce deadlines alone.
//! - [`turns`]: one piece of work at a time per entitlement, in order.
//! - [`channel`]: the session with the broker, reconnecting.
//! - [`provider`]: tenants: the sandbox, and the clouds; typed failures.
//! - [`clock`]: time, from jitgate-shared, so tests can move it.
//! - [`agent`]: wiring it together for `jitgate-agent run`.

pub mod agent;
pub mod channel;
pub use jitgate_shared::clock;
pub mod enroll;
pub mod executor;
pub mod journal;
pub mod provider;
pub mod state;
pub mod turns;
