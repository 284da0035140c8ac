//! Word that requests, grants or agents changed, for whoever watches live
//! (the console's open pages). It carries no record, only what changed and
//! whose it was, so a listener shows only what its person may see.
//!
//! In memory and best effort: a listener that falls behind gets a
//! `Lagged` and refreshes everything. Changes committed by another broker
//! sharing the store come through the store's announcements
//! ([`Feed::follow`]).

use tokio::sync::{broadcast, mpsc};

pub use crate::store::changed::{Changed, Topic};

/// The broadcast of committed changes.
#[derive(Debug)]
pub struct Feed {
    tx: broadcast::Sender<Changed>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(256).0,
        }
    }
}

impl Feed {
    /// Tells the listeners (none listening is fine).
    pub fn publish(&self, changed: Changed) {
        let _ = self.tx.send(changed);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.tx.subscribe()
    }

    /// Tells the listeners of what other brokers committed, until the
    /// announcements end.
    pub async fn follow(&self, mut changes: mpsc::Receiver<Changed>) {
        while let Some(changed) = changes.recv().await {
            self.publish(changed);
        }
    }
}
