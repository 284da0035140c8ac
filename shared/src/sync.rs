//! Locks shared by broker and agent.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking it over when a thread panicked while holding it: the
/// data behind these locks (maps, counters, queues) is whole after every
/// statement, so a panic leaves nothing half-changed to guard against.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
