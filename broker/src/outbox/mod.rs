//! The outbox: signed grant and revoke commands waiting for a
//! configuration's agents. Its one home:
//!
//! - [`command`]: the command a lease change calls for, with its
//!   idempotency key.
//! - [`queue`]: the queue rules every store backend shares (idempotency,
//!   newest per entitlement, revokes first).
//! - [`claims`]: which commands are in flight or held back, in memory.
//! - [`answer`]: what an agent's answer means for a command (settled,
//!   retried, a revoke failing) and the pauses between tries.
//!
//! Services queue commands in a [`Change`](crate::store::Change) and store
//! answers (`service::delivery`); the store keeps the queue durable; the hub
//! only sends what [`ready`] hands it and reports what came back.

pub mod answer;
pub mod claims;
pub mod command;
pub mod queue;

use std::collections::HashMap;
use std::time::Instant;

use jitgate_shared::v1::ConfigId;

pub use answer::{Answered, CommandResult};
pub use claims::OutboxSignal;
pub use command::Command;

use crate::store::{Store, StoreError};

/// The commands a session of `configuration` with `window` commands in
/// flight at most may send now: read from the store in queue order
/// (`window * 2` of them, a margin for those held back), without those
/// already `in_flight` on this session, and claimed for `session`.
pub async fn ready<V>(
    store: &dyn Store,
    signal: &OutboxSignal,
    configuration: &ConfigId,
    session: u64,
    window: usize,
    in_flight: &HashMap<String, V>,
) -> Result<Vec<Command>, StoreError> {
    let room = window.saturating_sub(in_flight.len());
    if room == 0 {
        return Ok(Vec::new());
    }
    let queued = store
        .outbox(configuration, window.saturating_mul(2))
        .await?
        .into_iter()
        .filter(|c| !in_flight.contains_key(&c.id))
        .collect();
    Ok(signal.claim(queued, session, room, Instant::now()))
}
