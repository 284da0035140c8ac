//! Group commit: concurrent writers' changes are written together, with one
//! flush for all of them.
//!
//! Each writer queues its changes. Whoever finds nobody writing leads: it
//! takes everything queued, writes it as one batch with one flush, hands
//! every writer its own results, and wakes the writers still queued so one
//! of them leads the next batch. The others wait without holding a thread.
//! Nobody gets a result before the flush that covers it, and N concurrent
//! writers share a few writes instead of making N.
//!
//! A write, once begun, is synchronous to its end (no await inside), so a
//! caller giving up cannot leave other writers' changes written but
//! unanswered; a caller that gives up while still queued takes its changes
//! back out of the queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use jitgate_shared::sync::lock;
use tokio::sync::{oneshot, Notify};

/// One writer's items and where its results go.
struct Queued<T, R> {
    ticket: u64,
    items: Vec<T>,
    answer: oneshot::Sender<Vec<R>>,
}

pub(super) struct CommitQueue<T, R> {
    queued: Mutex<Vec<Queued<T, R>>>,
    /// Held while a batch is written.
    writing: Mutex<()>,
    /// Woken when a write ends, so a queued writer leads the next.
    written: Notify,
    tickets: AtomicU64,
    items: AtomicU64,
    writes: AtomicU64,
}

/// Items written and writes made so far: how well writers share.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub items: u64,
    pub writes: u64,
}

impl<T, R> std::fmt::Debug for CommitQueue<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitQueue")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl<T, R> Default for CommitQueue<T, R> {
    fn default() -> Self {
        Self {
            queued: Mutex::new(Vec::new()),
            writing: Mutex::new(()),
            written: Notify::new(),
            tickets: AtomicU64::new(0),
            items: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }
}

/// Takes a writer's items back out of the queue if it gives up before
/// they were taken for writing.
struct Waiting<'a, T, R> {
    queue: &'a CommitQueue<T, R>,
    ticket: u64,
}

/// Ends a write, even one that panicked: gives up the right to write, then
/// wakes the queued writers so one of them writes next.
struct WriteDone<'a> {
    writing: Option<std::sync::MutexGuard<'a, ()>>,
    written: &'a Notify,
}

impl Drop for WriteDone<'_> {
    fn drop(&mut self) {
        self.writing.take();
        self.written.notify_waiters();
    }
}

impl<T, R> Drop for Waiting<'_, T, R> {
    fn drop(&mut self) {
        lock(&self.queue.queued).retain(|q| q.ticket != self.ticket);
    }
}

impl<T, R> CommitQueue<T, R> {
    /// Writes `items` together with whatever other writers queued, by
    /// `write`, which must return one result per item, in order, be durable
    /// when it returns, and may block the thread. `None` when the writer
    /// that carried the items failed (panicked) before answering: whether
    /// they were written is unknown.
    pub(super) async fn commit(&self, items: Vec<T>, write: impl Fn(Vec<T>) -> Vec<R>) -> Option<Vec<R>> {
        let (answer, mut results) = oneshot::channel();
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        lock(&self.queued).push(Queued {
            ticket,
            items,
            answer,
        });
        let _waiting = Waiting { queue: self, ticket };
        loop {
            // Registered before looking, so a write ending in between
            // still wakes this writer.
            let written = self.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            match results.try_recv() {
                Ok(done) => return Some(done),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if let Some(writing) = self.try_writing() {
                let _done = WriteDone {
                    writing: Some(writing),
                    written: &self.written,
                };
                // Everything queued goes in, this writer's items too unless
                // a write that just ended took them.
                self.write_queued(&write);
                continue;
            }
            tokio::select! {
                done = &mut results => return done.ok(),
                _ = written => {}
            }
        }
    }

    /// The right to write, unless another writer holds it. A writer that
    /// panicked left nothing half-done in the queue: the next may write.
    fn try_writing(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        match self.writing.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Takes everything queued, writes it and answers each writer.
    fn write_queued(&self, write: &impl Fn(Vec<T>) -> Vec<R>) {
        let batch = std::mem::take(&mut *lock(&self.queued));
        if batch.is_empty() {
            return;
        }
        let sizes: Vec<usize> = batch.iter().map(|q| q.items.len()).collect();
        let (items, answers): (Vec<Vec<T>>, Vec<_>) = batch.into_iter().map(|q| (q.items, q.answer)).unzip();
        let items: Vec<T> = items.into_iter().flatten().collect();
        self.items.fetch_add(items.len() as u64, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut written = write(items).into_iter();
        for (size, answer) in sizes.into_iter().zip(answers) {
            // A writer that gave up is no longer listening.
            let _ = answer.send(written.by_ref().take(size).collect());
        }
    }

    pub(super) fn counts(&self) -> Counts {
        Counts {
            items: self.items.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.queued).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    /// Runs `f` on a thread of its own, as a writer on another worker.
    fn on_thread<X: Send + 'static>(
        f: impl std::future::Future<Output = X> + Send + 'static,
    ) -> std::thread::JoinHandle<X> {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f)
        })
    }

    fn until(condition: impl Fn() -> bool) {
        while !condition() {
            std::thread::yield_now();
        }
    }

    #[test]
    fn concurrent_writers_share_one_write_and_each_gets_its_own_results() {
        const WRITERS: usize = 64;
        let queue = Arc::new(CommitQueue::<usize, (usize, usize)>::default());
        // The first write is held until every other writer has queued.
        let hold = Arc::new(Barrier::new(2));
        let writes = Arc::new(Mutex::new(Vec::new()));
        let writer = |i: usize| {
            let (queue, hold, writes) = (queue.clone(), hold.clone(), writes.clone());
            on_thread(async move {
                let write = |items: Vec<usize>| {
                    let n = {
                        let mut w = writes.lock().unwrap();
                        w.push(items.len());
                        w.len()
                    };
                    if n == 1 {
                        hold.wait();
                    }
                    items.into_iter().map(|x| (x, n)).collect()
                };
                let results = queue.commit(vec![i, i + 1000], write).await.unwrap();
                // Its own items, in order, from a write that finished.
                assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), [i, i + 1000]);
                assert!(writes.lock().unwrap().len() >= results[0].1);
            })
        };
        let first = writer(0);
        until(|| !writes.lock().unwrap().is_empty());
        let rest: Vec<_> = (1..WRITERS).map(writer).collect();
        until(|| queue.waiting() == WRITERS - 1);
        hold.wait();
        first.join().unwrap();
        for w in rest {
            w.join().unwrap();
        }
        assert_eq!(
            *writes.lock().unwrap(),
            [2, 2 * (WRITERS - 1)],
            "the first writer's write, then one for everyone queued behind it"
        );
        assert_eq!(
            queue.counts(),
            Counts {
                items: 2 * WRITERS as u64,
                writes: 2
            }
        );
    }

    #[tokio::test]
    async fn a_lone_writer_writes_at_once() {
        let queue = CommitQueue::<u8, u8>::default();
        assert_eq!(queue.commit(vec![1, 2], |items| items).await, Some(vec![1, 2]));
        assert_eq!(queue.commit(vec![], |items| items).await, Some(vec![]));
        assert_eq!(queue.counts(), Counts { items: 2, writes: 2 });
    }

    #[test]
    fn a_writer_that_gives_up_while_queued_takes_its_items_back() {
        let queue = Arc::new(CommitQueue::<u8, u8>::default());
        let hold = Arc::new(Barrier::new(2));
        let first = {
            let (queue, hold) = (queue.clone(), hold.clone());
            on_thread(async move {
                queue
                    .commit(vec![1], |items| {
                        hold.wait();
                        items
                    })
                    .await
            })
        };
        until(|| queue.counts().writes == 1);
        // Queued behind the write, then dropped unanswered.
        let gave_up = {
            let queue = queue.clone();
            on_thread(async move {
                let commit = queue.commit(vec![2], |_| panic!("never written"));
                tokio::time::timeout(std::time::Duration::ZERO, commit)
                    .await
                    .is_err()
            })
        };
        assert!(gave_up.join().unwrap(), "still queued when it gave up");
        assert_eq!(queue.waiting(), 0, "its items left the queue");
        hold.wait();
        assert_eq!(first.join().unwrap(), Some(vec![1]));
        assert_eq!(queue.counts(), Counts { items: 1, writes: 1 });
    }

    #[test]
    fn writers_carried_by_a_writer_that_panicked_are_told_so() {
        let queue = Arc::new(CommitQueue::<u8, u8>::default());
        let hold = Arc::new(Barrier::new(2));
        // The first write waits until two more writers queued behind it;
        // whichever of them writes next takes both and panics.
        let write = {
            let hold = hold.clone();
            move |items: Vec<u8>| {
                if items == [1] {
                    hold.wait();
                    return items;
                }
                panic!("disk on fire")
            }
        };
        let spawn = |item: u8| {
            let (queue, write) = (queue.clone(), write.clone());
            on_thread(async move { queue.commit(vec![item], write).await })
        };
        let first = spawn(1);
        until(|| queue.counts().writes == 1);
        let (second, third) = (spawn(2), spawn(3));
        until(|| queue.waiting() == 2);
        hold.wait();
        assert_eq!(first.join().unwrap(), Some(vec![1]));
        let mut outcomes = [second.join(), third.join()];
        outcomes.sort_by_key(Result::is_ok);
        assert!(outcomes[0].is_err(), "the writer panicked");
        assert_eq!(
            outcomes[1].as_ref().unwrap(),
            &None,
            "the writer it carried is not told its item was written"
        );
        let next = queue.clone();
        assert_eq!(
            on_thread(async move { next.commit(vec![4], |items| items).await })
                .join()
                .unwrap(),
            Some(vec![4]),
            "the next writer writes"
        );
    }
}
