//! Types that cross a process boundary in jitgate, versioned.
//!
//! `v1` is the only version. Types here are a stable contract between the
//! broker, the gateway agents and the `jitgate` CLI; internal broker types are
//! free to change. This crate does no I/O.
//!
//! [`error_chain`] is the one way broker, agent and CLI put an error and its
//! causes into a message; [`backoff`] the one rule for pauses between tries;
//! [`clock`] the one way either side reads the time.

pub mod backoff;
pub mod clock;
pub mod v1;

/// An error and its sources, `outer: inner: ...`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
