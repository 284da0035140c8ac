//! jitgate broker: decides who gets which cloud rights for how long, and
//! queues signed grant and revoke commands for gateway agents.
//!
//! - [`domain`]: pure logic (policies, requests, grants, leases).
//! - [`outbox`]: commands waiting for agents: queue rules, claims,
//!   answers and backoff.
//! - [`store`]: durable state behind the [`store::Store`] trait.
//! - [`service`]: combines domain, store, policies and clock.
//! - [`scheduler`]: scheduled work: due jobs, periodic sweeps and anchors.
//! - [`api`]: REST API v1 (axum), thin over services.
//! - [`hub`]: the agent hub: sessions over mutually authenticated websockets.
//! - [`audit`]: the hash-chained audit log and its signed anchors.
//! - [`identity`]: OIDC, SAML and SCIM 2.0 (the protocol side), sign-in
//!   decisions.
//! - [`tls`]: the broker CA, the server certificate, the broker's own keys
//!   (owner-only files).
//! - [`config`]: layered broker configuration.
//! - [`server`]: wiring it all up for `jitgate-broker serve`.
//! - [`quickstart`]: `jitgate-broker quickstart`: a catalogue of sandboxed
//!   tenants, their agents, demo people.
//! - [`cli`]: the `jitgate` client (REST only).
//! - [`clock`]: time, from jitgate-shared, so tests can move it.

pub mod api;
pub mod audit;
pub mod cli;
pub use jitgate_shared::clock;
pub mod config;
pub mod console;
pub mod control;
pub mod domain;
pub mod hub;
pub mod identity;
pub mod metrics;
pub mod notify;
pub mod on_call;
pub mod outbox;
pub mod quickstart;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;

#[cfg(test)]
pub(crate) mod testing;
