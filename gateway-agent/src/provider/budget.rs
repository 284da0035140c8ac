//! A tenant's rate budget, shared by every call a provider makes to it:
//! at most `rate` calls per second (no bursts above it), at most
//! `operations` long-running operations outstanding, revokes served before
//! grants, and a pause for everyone after the tenant says "throttled",
//! growing with each throttle in a row (exponential, with equal jitter) and
//! at least what the tenant asked for.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Which queue a call waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Removing access: served first.
    Revoke,
    Grant,
}

#[derive(Debug, Clone, Copy)]
pub struct BudgetSettings {
    /// Calls per second to the tenant's API.
    pub rate: NonZeroU32,
    /// Long-running operations (assignment creations and deletions)
    /// outstanding at once.
    pub operations: usize,
    /// First pause after a throttle; doubles with each throttle in a row.
    pub throttle_pause: Duration,
    /// Longest pause after throttles.
    pub throttle_pause_max: Duration,
}

/// Counters, for benchmarks and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStats {
    pub calls: u64,
    pub throttled: u64,
}

#[derive(Debug)]
pub struct Budget {
    settings: BudgetSettings,
    limiter: DefaultDirectRateLimiter,
    operations: Semaphore,
    /// Revokes waiting for a call, and for an operation slot. Kept apart:
    /// a grant that holds a slot keeps making its calls even while revokes
    /// wait for slots (else they would wait for each other forever).
    revokes_calling: RevokeQueue,
    revokes_starting: RevokeQueue,
    paused_until: Mutex<Option<Instant>>,
    throttles_in_a_row: AtomicU32,
    calls: AtomicU64,
    throttled: AtomicU64,
}

/// Revokes waiting at one gate; grants at that gate let them go first.
#[derive(Debug, Default)]
struct RevokeQueue {
    waiting: AtomicUsize,
    gone: Notify,
}

/// Counts a waiting revoke for as long as it lives.
struct RevokeWaiting<'a>(&'a RevokeQueue);

impl Drop for RevokeWaiting<'_> {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.gone.notify_waiters();
        }
    }
}

impl RevokeQueue {
    /// A revoke joins the queue; a grant waits until it is empty.
    async fn enter(&self, priority: Priority) -> Option<RevokeWaiting<'_>> {
        match priority {
            Priority::Revoke => {
                self.waiting.fetch_add(1, Ordering::AcqRel);
                Some(RevokeWaiting(self))
            }
            Priority::Grant => {
                loop {
                    // Registered before the check, so a wake-up between
                    // the check and the wait is not lost.
                    let gone = self.gone.notified();
                    let mut gone = std::pin::pin!(gone);
                    gone.as_mut().enable();
                    if self.waiting.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    gone.await;
                }
                None
            }
        }
    }

    fn busy(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }
}

impl Budget {
    pub fn new(settings: BudgetSettings) -> Self {
        // One call per 1/rate seconds, no burst beyond one: the rate holds
        // over any window, not just on average.
        let quota = Quota::per_second(settings.rate).allow_burst(NonZeroU32::MIN);
        Self {
            settings,
            limiter: RateLimiter::direct(quota),
            operations: Semaphore::new(settings.operations.max(1)),
            revokes_calling: RevokeQueue::default(),
            revokes_starting: RevokeQueue::default(),
            paused_until: Mutex::new(None),
            throttles_in_a_row: AtomicU32::new(0),
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            calls: self.calls.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }

    /// Waits for a turn to make one call.
    pub async fn call(&self, priority: Priority) {
        let _waiting = self.revokes_calling.enter(priority).await;
        self.wait_out_pause().await;
        self.limiter.until_ready().await;
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits for a turn to make one call that does not count against the
    /// rate (a read, where the tenant limits writes): revokes first, and
    /// not during a pause.
    pub async fn read(&self, priority: Priority) {
        let _waiting = self.revokes_calling.enter(priority).await;
        self.wait_out_pause().await;
    }

    /// Waits for a slot for one long-running operation; the slot is freed
    /// when the permit is dropped (once the operation is final).
    pub async fn operation(&self, priority: Priority) -> SemaphorePermit<'_> {
        loop {
            let _waiting = self.revokes_starting.enter(priority).await;
            let permit = match self.operations.acquire().await {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => unreachable_closed(),
            };
            // A grant queued before a revoke arrived gives its slot up.
            if priority == Priority::Grant && self.revokes_starting.busy() {
                continue;
            }
            return permit;
        }
    }

    /// The tenant said "throttled": everyone pauses. Returns the pause.
    /// Throttles answered to calls already in flight when the pause began
    /// do not lengthen it further (many calls in flight would otherwise
    /// escalate it at once); each throttle after a pause does.
    pub fn throttled(&self, asked: Option<Duration>) -> Duration {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let Ok(mut paused) = self.paused_until.lock() else {
            return asked.unwrap_or(self.settings.throttle_pause);
        };
        if let Some(until) = paused.filter(|until| *until > now) {
            let until = until.max(now + asked.unwrap_or_default());
            *paused = Some(until);
            return until - now;
        }
        let n = self.throttles_in_a_row.fetch_add(1, Ordering::AcqRel).min(16);
        let ceiling = self
            .settings
            .throttle_pause
            .saturating_mul(1 << n)
            .min(self.settings.throttle_pause_max);
        let half = ceiling / 2;
        let jitter = half.mul_f64(rand::random::<f64>());
        let pause = (half + jitter).max(asked.unwrap_or_default());
        *paused = Some(now + pause);
        pause
    }

    /// A call went through: the next throttle starts from the first pause.
    pub fn succeeded(&self) {
        self.throttles_in_a_row.store(0, Ordering::Release);
    }

    async fn wait_out_pause(&self) {
        loop {
            let until = self.paused_until.lock().ok().and_then(|p| *p);
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }
}

#[cold]
fn unreachable_closed() -> ! {
    // Semaphore::acquire fails only once closed; this one never is.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn budget(rate: u32, operations: usize) -> Arc<Budget> {
        Arc::new(Budget::new(BudgetSettings {
            rate: NonZeroU32::new(rate).unwrap(),
            operations,
            throttle_pause: Duration::from_millis(200),
            throttle_pause_max: Duration::from_secs(5),
        }))
    }

    #[tokio::test]
    async fn calls_never_exceed_the_rate_in_any_second() {
        let b = budget(20, 5);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..30 {
            b.call(Priority::Grant).await;
            at.push(Instant::now() - start);
        }
        for (i, t) in at.iter().enumerate() {
            let in_window = at[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(in_window <= 20, "{in_window} calls within a second from {t:?}");
        }
        assert_eq!(b.stats().calls, 30);
    }

    // Real time throughout: the rate limiter keeps its own clock (and
    // paused time would need tokio's test-util, rebuilding every crate).
    #[tokio::test]
    async fn a_throttle_pauses_everyone_at_least_as_long_as_asked() {
        let b = budget(1000, 5);
        let pause = b.throttled(Some(Duration::from_millis(300)));
        assert!(pause >= Duration::from_millis(300));
        let start = Instant::now();
        b.call(Priority::Revoke).await;
        assert!(Instant::now() - start >= Duration::from_millis(300));
        // In a row (each after the last pause), pauses grow; a success
        // resets them.
        let first = b.throttled(None);
        b.call(Priority::Grant).await;
        let second = b.throttled(None);
        b.call(Priority::Grant).await;
        let third = b.throttled(None);
        assert!(
            third >= Duration::from_millis(400),
            "{first:?} {second:?} {third:?}"
        );
        b.call(Priority::Grant).await;
        b.succeeded();
        assert!(b.throttled(None) <= Duration::from_millis(200));
        // Throttles of calls in flight during that pause do not lengthen it.
        for _ in 0..10 {
            assert!(b.throttled(None) <= Duration::from_millis(200));
        }
        assert_eq!(b.stats().throttled, 15);
    }

    #[tokio::test]
    async fn grants_holding_every_slot_finish_while_revokes_wait_for_one() {
        let b = budget(1000, 2);
        let mut grants = Vec::new();
        for _ in 0..2 {
            let b = b.clone();
            grants.push(tokio::spawn(async move {
                let _slot = b.operation(Priority::Grant).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                // Calls made while holding the slot, with revokes queued.
                for _ in 0..3 {
                    b.call(Priority::Grant).await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let revoke = {
            let b = b.clone();
            tokio::spawn(async move {
                let _slot = b.operation(Priority::Revoke).await;
                b.call(Priority::Revoke).await;
            })
        };
        tokio::time::timeout(Duration::from_secs(5), async {
            for g in grants {
                g.await.unwrap();
            }
            revoke.await.unwrap();
        })
        .await
        .expect("no deadlock between slots and calls");
    }

    #[tokio::test]
    async fn waiting_revokes_go_before_grants() {
        let b = budget(10, 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let slot = b.operation(Priority::Grant).await;
        let mut tasks = Vec::new();
        for (i, p) in [
            Priority::Grant,
            Priority::Revoke,
            Priority::Grant,
            Priority::Revoke,
        ]
        .into_iter()
        .enumerate()
        {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = b.operation(p).await;
                order.lock().unwrap().push((i, p));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(slot);
        for t in tasks {
            t.await.unwrap();
        }
        let order: Vec<Priority> = order.lock().unwrap().iter().map(|(_, p)| *p).collect();
        assert_eq!(
            order,
            [
                Priority::Revoke,
                Priority::Revoke,
                Priority::Grant,
                Priority::Grant
            ]
        );
    }
}
