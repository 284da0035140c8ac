//! Telling people what happened, where they are: events raised by audit
//! records (and ending-soon warnings), routed by `workflows.toml` to
//! addresses, queued durably in the store, delivered by channels (email,
//! webhooks) with retries.
//!
//! - [`event`]: the kinds of event and the facts a message shows.
//! - [`route`]: destinations, per-resource routes, addresses.
//! - [`queue`]: the notification record, claims, backoff, give-up.
//! - [`webhook`]: Standard Webhooks signatures over CloudEvents bodies.
//! - [`email`]: mail messages (plain text and HTML) and SMTP.
//! - [`slack`]: Block Kit messages, interactions, the Web API.
//! - [`teams`]: Adaptive Cards to Teams Workflows webhooks.
//! - [`channels`]: the channels the broker configuration sets up, and
//!   the one `deliver` the delivery service calls.
//!
//! The service that routes and delivers is
//! [`service::notify`](crate::service::notify). Nothing here is on the
//! path of a grant or a revoke: a notification is queued after the
//! audited change committed, by a router that follows the audit log, so
//! a failing channel delays nothing but its own messages.

pub mod channels;
pub mod email;
pub mod event;
pub mod queue;
pub mod route;
pub mod shown;
pub mod slack;
pub mod teams;
pub mod webhook;
