//! The `jitgate` command-line client: it speaks only the REST API.
//!
//! - [`client`]: a typed REST client (also used by the integration tests).
//! - [`login`]: `jitgate login` (browser, loopback redirect) and the saved
//!   session tokens.
//! - [`output`]: human-readable tables.

pub mod client;
pub mod login;
pub mod output;
