//! jitgate's integration tests: one binary, many modules, real processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]
// The harness watches real processes, so it reads the wall clock.
#![allow(clippy::disallowed_methods)]

mod agents;
mod api_input;
mod aws;
mod backup;
mod chains;
mod cli;
mod conformance;
mod console;
mod crash;
mod database;
mod deploy;
mod enrollment;
mod entra;
mod entra_graph;
mod failover;
mod fault;
mod fuzz_corpus;
mod headers;
mod helm;
mod hub;
mod images;
mod lifecycle;
mod notify;
mod observe;
mod oidc;
mod on_call;
mod policies;
mod promises;
mod quickstart;
mod saml;
mod scim;
mod slack;
mod soak;
mod support;
