//! Turns per entitlement: work on one entitlement (commands, the deadline
//! watch's removals) runs one piece at a time, in the order the places were
//! taken. A place is taken synchronously, when a command arrives and before
//! a task is spawned for it, so the order the runtime happens to schedule
//! tasks in cannot put a revoke before the grant it follows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The last place taken in each entitlement's line.
#[derive(Debug, Default)]
pub struct Turns {
    lines: Arc<Mutex<HashMap<String, Tail>>>,
    tickets: AtomicU64,
}

#[derive(Debug)]
struct Tail {
    ticket: u64,
    /// Resolves when that place's turn has ended.
    ended: oneshot::Receiver<()>,
}

/// A place in one entitlement's line. Its turn starts when
/// [`Turn::wait`] returns and ends when it is dropped.
#[derive(Debug)]
pub struct Turn {
    lines: Arc<Mutex<HashMap<String, Tail>>>,
    key: String,
    ticket: u64,
    /// The end of the turn before this one, until waited for.
    before: Option<oneshot::Receiver<()>>,
    /// Dropped when this turn ends: the next one starts.
    ended: Option<oneshot::Sender<()>>,
}

impl Turns {
    /// Takes the next place in `key`'s line.
    pub fn take(&self, key: String) -> Turn {
        let (ended, next_waits_for) = oneshot::channel();
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let before = jitgate_shared::sync::lock(&self.lines)
            .insert(
                key.clone(),
                Tail {
                    ticket,
                    ended: next_waits_for,
                },
            )
            .map(|tail| tail.ended);
        Turn {
            lines: self.lines.clone(),
            key,
            ticket,
            before,
            ended: Some(ended),
        }
    }

    /// Entitlements with a place taken and not yet ended.
    #[cfg(test)]
    fn lines(&self) -> usize {
        jitgate_shared::sync::lock(&self.lines).len()
    }
}

impl Turn {
    /// Returns once every place taken before this one in its line has
    /// ended. Cancel-safe: waiting again goes on where it stopped.
    pub async fn wait(&mut self) {
        if let Some(before) = self.before.as_mut() {
            // An error is the sender dropped: that turn ended.
            let _ = before.await;
            self.before = None;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        {
            let mut lines = jitgate_shared::sync::lock(&self.lines);
            if lines
                .get(&self.key)
                .is_some_and(|tail| tail.ticket == self.ticket)
            {
                lines.remove(&self.key);
            }
        }
        let ended = self.ended.take();
        match (self.before.take(), tokio::runtime::Handle::try_current()) {
            // Given up before its turn came (its task was cancelled): the
            // next place still waits for the one before this.
            (Some(before), Ok(runtime)) => {
                runtime.spawn(async move {
                    let _ = before.await;
                    drop(ended);
                });
            }
            _ => drop(ended),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether `turn`'s wait would return now.
    async fn started(turn: &mut Turn) -> bool {
        tokio::time::timeout(Duration::from_millis(20), turn.wait())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn places_are_served_in_the_order_taken_whatever_polls_first() {
        let turns = Turns::default();
        let mut first = turns.take("e".into());
        let mut second = turns.take("e".into());
        let mut other = turns.take("f".into());
        assert!(!started(&mut second).await, "the second waits for the first");
        assert!(started(&mut other).await, "another entitlement does not wait");
        assert!(started(&mut first).await);
        assert!(!started(&mut second).await, "not while the first's turn lasts");
        drop(first);
        assert!(started(&mut second).await);
        drop((second, other));
        assert_eq!(turns.lines(), 0, "ended lines are forgotten");
    }

    #[tokio::test]
    async fn a_place_given_up_does_not_let_the_next_overtake_the_one_before() {
        let turns = Turns::default();
        let mut first = turns.take("e".into());
        let given_up = turns.take("e".into());
        let mut third = turns.take("e".into());
        assert!(started(&mut first).await);
        drop(given_up);
        assert!(!started(&mut third).await, "the first's turn still lasts");
        drop(first);
        assert!(started(&mut third).await);
    }
}
