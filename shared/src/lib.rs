//! Types that cross a process boundary in jitgate, versioned.
//!
//! `v1` is the only version. Types here are a stable contract between the
//! broker, the gateway agents and the `jitgate` CLI; internal broker types are
//! free to change. This crate does no I/O.
//!
//! [`error_chain`] is the one way broker, agent and CLI put an error and its
//! causes into a message; [`backoff`] the one rule for pauses between tries;
//! [`clock`] the one way either side reads the time; [`blocking`] the one
//! way either side makes a call that blocks (a disk flush) from async code;
//! [`sync::lock`] the one way either side takes a lock another thread may
//! have panicked holding.

pub mod backoff;
pub mod blocking;
pub mod clock;
pub mod sync;
pub mod v1;

/// An error and its sources, `outer: inner: ...`. A source an error
/// already shows at the end of its own message is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("reading the store: {0}")]
        Shows(#[source] std::io::Error),
        #[error("reading the store")]
        Hides(#[source] std::io::Error),
    }

    #[test]
    fn every_cause_appears_once() {
        let io = || std::io::Error::other("disk full");
        assert_eq!(error_chain(&Outer::Shows(io())), "reading the store: disk full");
        assert_eq!(error_chain(&Outer::Hides(io())), "reading the store: disk full");
    }
}
