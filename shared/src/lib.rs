//! Types that cross a process boundary in jitgate, versioned.
//!
//! `v1` is the only version. Types here are a stable contract between the
//! broker, the gateway agents and the `jitgate` CLI; internal broker types are
//! free to change. This crate does no I/O.

pub mod v1;
