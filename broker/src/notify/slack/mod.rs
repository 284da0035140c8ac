//! Slack: messages with Approve / Deny buttons (Block Kit), direct
//! messages to people, every copy updated when someone decides, and the
//! interactions Slack sends back, verified with the app's signing secret.
//!
//! - [`verify`]: Slack's v0 request signatures.
//! - [`interaction`]: button clicks and the deny modal, read.
//! - [`blocks`]: Block Kit types and each event's message.
//! - [`api`]: the Web API methods jitgate calls.
//!
//! What a click does is decided by
//! [`service::chat`](crate::service::chat): the same review and
//! extension services as the console and the API.

pub mod api;
pub mod blocks;
pub mod interaction;
pub mod verify;
