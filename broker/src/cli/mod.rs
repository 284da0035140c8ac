//! The `jitgate` command-line client: it speaks only the REST API.
//!
//! - [`client`]: a typed REST client (also used by the integration tests).
//! - [`output`]: human-readable tables.

pub mod client;
pub mod output;
